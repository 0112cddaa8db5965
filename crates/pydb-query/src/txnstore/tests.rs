//! The store over transactions: constraints, index maintenance and ranges,
//! transactional DDL, the catalog cache across transactions, conflicts,
//! and the verifier catching planted damage.

use std::ops::Bound;
use std::sync::Arc;

use pydb_storage::MemoryStorage;
use pydb_txn::{Isolation, TxnManager};

use super::*;
use crate::catalog::Column;
use crate::check::check_transaction;
use crate::encoding::encode_row;
use crate::value::DataType;

fn manager() -> Arc<TxnManager> {
    let engine = Arc::new(MemoryStorage::new());
    Arc::new(TxnManager::open(engine, pydb_txn::Options::default()).unwrap())
}

fn column(name: &str, ty: DataType, nullable: bool) -> Column {
    Column {
        name: name.into(),
        ty,
        nullable,
        default: Value::Null,
    }
}

/// `t(id INTEGER PRIMARY KEY, name TEXT UNIQUE, score INTEGER NOT NULL)`
/// with an index on score.
fn people() -> Table {
    Table {
        name: "People".into(),
        id: 0,
        columns: vec![
            column("id", DataType::Integer, false),
            column("name", DataType::Text, true),
            column("score", DataType::Integer, false),
        ],
        primary_key: vec![0],
        indexes: vec![
            Index {
                name: "people_name_key".into(),
                id: 0,
                table: "people".into(),
                columns: vec![1],
                unique: true,
            },
            Index {
                name: "by_score".into(),
                id: 0,
                table: "people".into(),
                columns: vec![2],
                unique: false,
            },
        ],
    }
}

fn row(id: i64, name: Option<&str>, score: i64) -> Row {
    vec![
        Value::Integer(id),
        name.map_or(Value::Null, |n| Value::Text(n.into())),
        Value::Integer(score),
    ]
}

struct Fixture {
    mgr: Arc<TxnManager>,
    cache: Shared,
}

impl Fixture {
    fn new() -> Self {
        let mgr = manager();
        Fixture {
            cache: Shared::new(mgr.clone()),
            mgr,
        }
    }

    fn begin(&self) -> OpenTxn {
        OpenTxn::new(self.mgr.begin(Isolation::Serializable).unwrap())
    }

    /// Runs `f` in a transaction of its own and commits it.
    fn run<T>(&self, f: impl FnOnce(&mut TxnStore<'_>) -> Result<T>) -> Result<T> {
        let mut open = self.begin();
        let out = f(&mut TxnStore::new(&mut open, &self.cache))?;
        open.tx.commit()?;
        Ok(out)
    }

    fn with_people(self) -> Self {
        self.run(|s| s.create_table(people())).unwrap();
        self
    }

    fn rows(&self) -> Vec<Row> {
        self.run(|s| {
            let t = s.table("people")?.unwrap();
            s.scan(&t)?.map(|r| r.map(|(_, row)| row)).collect()
        })
        .unwrap()
    }

    fn check(&self) -> crate::check::CheckReport {
        let tx = self.mgr.begin(Isolation::Snapshot).unwrap();
        check_transaction(&tx).unwrap()
    }
}

fn insert(f: &Fixture, r: Row) -> Result<RowKey> {
    f.run(|s| {
        let t = s.table("people")?.unwrap();
        s.insert(&t, r)
    })
}

fn constraint(result: Result<impl std::fmt::Debug>) -> &'static str {
    match result {
        Err(Error::Constraint { constraint, .. }) => constraint,
        other => panic!("expected a constraint error, got {other:?}"),
    }
}

#[test]
fn constraints_refuse_bad_rows_and_keep_good_ones() {
    let f = Fixture::new().with_people();
    insert(&f, row(1, Some("ann"), 10)).unwrap();
    assert_eq!(
        constraint(insert(&f, row(1, Some("bob"), 5))),
        "PRIMARY KEY"
    );
    assert_eq!(constraint(insert(&f, row(2, Some("ann"), 5))), "UNIQUE");
    let mut no_score = row(3, Some("cy"), 0);
    no_score[2] = Value::Null;
    assert_eq!(constraint(insert(&f, no_score)), "NOT NULL");
    let mut no_id = row(0, Some("di"), 0);
    no_id[0] = Value::Null;
    assert_eq!(constraint(insert(&f, no_id)), "NOT NULL");
    // NULLs never collide in a UNIQUE index.
    insert(&f, row(4, None, 1)).unwrap();
    insert(&f, row(5, None, 1)).unwrap();
    // 1.0 is the key 1.
    let mut real_pk = row(0, Some("eve"), 0);
    real_pk[0] = Value::Real(1.0);
    assert_eq!(constraint(insert(&f, real_pk)), "PRIMARY KEY");
    let err = insert(&f, row(6, Some("ann"), 1)).unwrap_err();
    assert_eq!(err.sqlstate(), "23505");
    assert_eq!(
        err.to_string(),
        "UNIQUE constraint failed: people.name",
        "SQLite's wording"
    );
    assert_eq!(
        f.rows(),
        vec![row(1, Some("ann"), 10), row(4, None, 1), row(5, None, 1)]
    );
    assert!(f.check().is_ok(), "{:?}", f.check());
}

#[test]
fn updates_and_deletes_keep_indexes_in_step() {
    let f = Fixture::new().with_people();
    for i in 1..=5 {
        insert(&f, row(i, Some(&format!("p{i}")), i * 10)).unwrap();
    }
    f.run(|s| {
        let t = s.table("people")?.unwrap();
        let (key, old) = s.get_by_pk(&t, &[Value::Integer(2)])?.unwrap();
        // Move the row to a new primary key and a new score.
        let moved = s.update(&t, &key, &old, row(20, Some("p2"), 200))?;
        assert_ne!(moved, key);
        let (key, old) = s.get_by_pk(&t, &[Value::Integer(3)])?.unwrap();
        s.delete(&t, &key, &old)?;
        // Same name again is fine for the same row.
        let (key, old) = s.get_by_pk(&t, &[Value::Integer(4)])?.unwrap();
        s.update(&t, &key, &old, row(4, Some("p4"), 41))?;
        Ok(())
    })
    .unwrap();
    // Taking another row's name fails and, rolled back, changes nothing.
    let err = f.run(|s| {
        let t = s.table("people")?.unwrap();
        let (key, old) = s.get_by_pk(&t, &[Value::Integer(1)])?.unwrap();
        s.update(&t, &key, &old, row(1, Some("p5"), 10))
    });
    assert_eq!(constraint(err), "UNIQUE");
    assert_eq!(
        f.rows(),
        vec![
            row(1, Some("p1"), 10),
            row(4, Some("p4"), 41),
            row(5, Some("p5"), 50),
            row(20, Some("p2"), 200)
        ]
    );
    let report = f.check();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.rows, 4);
    assert_eq!(report.index_entries, 8);
}

#[test]
fn index_ranges_are_engine_ranges() {
    let f = Fixture::new().with_people();
    for (i, score) in [30, 10, 20, 20, 40, 10].into_iter().enumerate() {
        insert(&f, row(i as i64, None, score)).unwrap();
    }
    let scores = |start: Bound<Vec<Value>>, end: Bound<Vec<Value>>| -> Vec<(i64, i64)> {
        f.run(|s| {
            let t = s.table("people")?.unwrap();
            let index = t.indexes[1].clone();
            let range = IndexRange { start, end };
            s.index_scan(&t, &index, &range)?
                .map(|r| {
                    r.map(|(_, row)| match (&row[2], &row[0]) {
                        (Value::Integer(s), Value::Integer(i)) => (*s, *i),
                        _ => panic!("{row:?}"),
                    })
                })
                .collect()
        })
        .unwrap()
    };
    let i = |v: i64| vec![Value::Integer(v)];
    let r = |v: f64| vec![Value::Real(v)];
    use Bound::{Excluded, Included, Unbounded};
    assert_eq!(
        scores(Included(i(20)), Included(i(20))),
        vec![(20, 2), (20, 3)]
    );
    assert_eq!(
        scores(Excluded(i(10)), Excluded(i(40))),
        vec![(20, 2), (20, 3), (30, 0)]
    );
    // A REAL bound on an INTEGER column compares by value.
    assert_eq!(
        scores(Included(r(19.5)), Excluded(r(30.0))),
        vec![(20, 2), (20, 3)]
    );
    assert_eq!(scores(Excluded(r(30.0)), Unbounded), vec![(40, 4)]);
    assert_eq!(scores(Unbounded, Included(i(10))), vec![(10, 1), (10, 5)]);
    assert_eq!(scores(Included(i(50)), Unbounded), vec![]);
}

#[test]
fn rolled_back_ddl_leaves_nothing() {
    let f = Fixture::new();
    let mut open = f.begin();
    {
        let mut s = TxnStore::new(&mut open, &f.cache);
        let t = s.create_table(people()).unwrap();
        s.insert(&t, row(1, Some("a"), 1)).unwrap();
        s.create_view(View {
            name: "v".into(),
            columns: None,
            sql: "SELECT 1".into(),
        })
        .unwrap();
        assert!(
            s.table("PEOPLE").unwrap().is_some(),
            "its own DDL is visible"
        );
    }
    open.tx.rollback();
    let tx = f.mgr.begin(Isolation::Snapshot).unwrap();
    let everything = space_scan(&tx, (Bound::Unbounded, Bound::Unbounded)).unwrap();
    assert_eq!(everything, vec![], "no key of the SQL space survives");
    assert!(f.run(|s| s.table("people")).unwrap().is_none());
}

#[test]
fn ids_are_never_reused_and_dropping_removes_everything() {
    let f = Fixture::new().with_people();
    insert(&f, row(1, Some("a"), 1)).unwrap();
    let first = f.run(|s| s.table("people")).unwrap().unwrap();
    f.run(|s| s.drop_table("people")).unwrap();
    let second = f.run(|s| s.create_table(people())).unwrap();
    assert!(second.id > first.indexes[1].id, "{} {:?}", second.id, first);
    assert_eq!(f.rows(), Vec::<Row>::new());
    f.run(|s| s.drop_index("by_score")).unwrap();
    f.run(|s| s.drop_table("people")).unwrap();
    let report = f.check();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(
        (report.tables, report.rows, report.index_entries),
        (0, 0, 0)
    );
    assert!(matches!(
        f.run(|s| s.drop_table("people")),
        Err(Error::Undefined { kind: "table", .. })
    ));
}

#[test]
fn create_index_fills_and_refuses_duplicates() {
    let f = Fixture::new().with_people();
    for i in 1..=3 {
        insert(&f, row(i, None, i % 2)).unwrap();
    }
    let unique = |name: &str, columns: Vec<usize>| Index {
        name: name.into(),
        id: 0,
        table: "people".into(),
        columns,
        unique: true,
    };
    assert_eq!(
        constraint(f.run(|s| s.create_index(unique("u_score", vec![2])))),
        "UNIQUE"
    );
    f.run(|s| s.create_index(unique("u_id_score", vec![0, 2])))
        .unwrap();
    assert!(matches!(
        f.run(|s| s.create_index(unique("U_ID_SCORE", vec![0]))),
        Err(Error::Duplicate { kind: "index", .. })
    ));
    let report = f.check();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.index_entries, 3 * 3);
}

#[test]
fn tables_without_primary_key_get_increasing_row_ids() {
    let f = Fixture::new();
    let mut t = people();
    t.primary_key.clear();
    f.run(|s| s.create_table(t)).unwrap();
    let a = insert(&f, row(1, Some("x"), 1)).unwrap();
    let b = insert(&f, row(1, None, 1)).unwrap();
    assert!(a < b);
    assert_eq!(f.rows(), vec![row(1, Some("x"), 1), row(1, None, 1)]);
    assert!(f.check().is_ok());
}

#[test]
fn ddl_is_visible_to_others_after_commit_only() {
    let f = Fixture::new();
    let mut before = f.begin();
    // Warm the shared cache with the empty catalog.
    assert!(
        TxnStore::new(&mut before, &f.cache)
            .tables()
            .unwrap()
            .is_empty()
    );
    let mut creator = f.begin();
    TxnStore::new(&mut creator, &f.cache)
        .create_table(people())
        .unwrap();
    let mut during = f.begin();
    assert!(
        TxnStore::new(&mut during, &f.cache)
            .table("people")
            .unwrap()
            .is_none()
    );
    creator.tx.commit().unwrap();
    // Snapshots taken before the commit still see no table...
    assert!(
        TxnStore::new(&mut before, &f.cache)
            .table("people")
            .unwrap()
            .is_none()
    );
    // ...and a new transaction sees it, though the cache held the old
    // catalog.
    assert!(f.run(|s| s.table("people")).unwrap().is_some());
    assert!(
        TxnStore::new(&mut during, &f.cache)
            .table("people")
            .unwrap()
            .is_none()
    );
}

#[test]
fn concurrent_duplicates_fail_with_40001() {
    for (first, second) in [
        (row(1, Some("a"), 1), row(1, Some("b"), 1)),
        (row(1, Some("a"), 1), row(2, Some("a"), 1)),
    ] {
        for isolation in [Isolation::Snapshot, Isolation::Serializable] {
            let f = Fixture::new().with_people();
            let mut a = OpenTxn::new(f.mgr.begin(isolation).unwrap());
            let mut b = OpenTxn::new(f.mgr.begin(isolation).unwrap());
            for (open, r) in [(&mut a, &first), (&mut b, &second)] {
                let mut s = TxnStore::new(open, &f.cache);
                let t = s.table("people").unwrap().unwrap();
                s.insert(&t, r.clone()).unwrap();
            }
            a.tx.commit().unwrap();
            let err = Error::from(b.tx.commit().unwrap_err());
            assert_eq!(err.sqlstate(), "40001", "{isolation:?}: {err}");
            assert!(err.is_retryable());
            assert_eq!(f.rows(), vec![first.clone()]);
        }
    }
}

#[test]
fn verifier_catches_planted_damage() {
    let f = Fixture::new().with_people();
    for i in 1..=3 {
        insert(&f, row(i, Some(&format!("p{i}")), i)).unwrap();
    }
    assert!(f.check().is_ok());
    let t = f.run(|s| s.table("people")).unwrap().unwrap();
    let by_score = &t.indexes[1];
    let row_key = encode_key(&[Value::Integer(2)]);
    let entry = layout::index_key(by_score.id, false, &[Value::Integer(2)], &row_key);

    // Delete an index entry behind the store's back.
    let mut tx = f.mgr.begin(Isolation::Snapshot).unwrap();
    space_delete(&mut tx, &entry).unwrap();
    tx.commit().unwrap();
    let report = f.check();
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert!(report.problems[0].contains("has no entry"), "{report:?}");

    // Put it back pointing at the wrong row, and add one for no row.
    let mut tx = f.mgr.begin(Isolation::Snapshot).unwrap();
    space_set(&mut tx, &entry, &encode_key(&[Value::Integer(3)])).unwrap();
    let stray = layout::index_key(by_score.id, false, &[Value::Integer(9)], &row_key);
    space_set(&mut tx, &stray, &row_key).unwrap();
    // And a row of a table that does not exist.
    space_set(
        &mut tx,
        &layout::row_key(999, &row_key),
        &encode_row(&row(2, None, 2)),
    )
    .unwrap();
    tx.commit().unwrap();
    let problems = f.check().problems.join("\n");
    assert!(problems.contains("points to row"), "{problems}");
    assert!(problems.contains("matches no row"), "{problems}");
    assert!(problems.contains("belongs to no table"), "{problems}");

    // A damaged catalog record is reported, not a panic.
    let mut tx = f.mgr.begin(Isolation::Snapshot).unwrap();
    space_set(
        &mut tx,
        &layout::catalog_key(CATALOG_TABLE, "people"),
        b"\x01\x06people\xff",
    )
    .unwrap();
    tx.commit().unwrap();
    let report = f.check();
    assert!(report.problems[0].starts_with("catalog: "), "{report:?}");
    // (The damage bypassed DDL, so this database's catalog cache still
    // holds the good definition; a reopened one reads the record.)
    let reopened = Fixture {
        mgr: f.mgr.clone(),
        cache: Shared::new(f.mgr.clone()),
    };
    assert!(matches!(
        reopened.run(|s| s.table("people")),
        Err(Error::Corrupted(_))
    ));
}

#[test]
fn every_engine_keeps_tables_rows_and_indexes_across_reopen() {
    use pydb_storage::{EngineConfig, EngineKind, open_engine};
    for kind in [
        EngineKind::Memory,
        EngineKind::Log,
        EngineKind::BTree,
        EngineKind::Lsm,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            let engine = open_engine(dir.path(), &EngineConfig::new(kind)).unwrap();
            let options = pydb_txn::Options {
                gc_interval: None,
                ..pydb_txn::Options::default()
            };
            Arc::new(TxnManager::open(engine, options).unwrap())
        };
        let mgr = open();
        let f = Fixture {
            cache: Shared::new(mgr.clone()),
            mgr,
        }
        .with_people();
        for i in 1..=20 {
            insert(&f, row(i, Some(&format!("p{i}")), i % 4)).unwrap();
        }
        let expected = f.rows();
        assert_eq!(expected.len(), 20, "{kind:?}");
        if kind == EngineKind::Memory {
            continue;
        }
        f.mgr.engine().flush().unwrap();
        drop(f);
        let mgr = open();
        let f = Fixture {
            cache: Shared::new(mgr.clone()),
            mgr,
        };
        assert_eq!(f.rows(), expected, "{kind:?} after reopening");
        let report = f.check();
        assert!(report.is_ok(), "{kind:?}: {report:?}");
        assert_eq!((report.rows, report.index_entries), (20, 40), "{kind:?}");
    }
}

#[test]
fn concurrent_inserts_without_primary_key_do_not_conflict() {
    let f = Fixture::new();
    let mut t = people();
    t.primary_key.clear();
    t.indexes.clear();
    let t = f.run(|s| s.create_table(t)).unwrap();
    let mut a = f.begin();
    let mut b = f.begin();
    for (open, i) in [(&mut a, 1), (&mut b, 2)] {
        TxnStore::new(open, &f.cache)
            .insert(&t, row(i, None, i))
            .unwrap();
    }
    TxnStore::new(&mut a, &f.cache)
        .insert(&t, row(3, None, 3))
        .unwrap();
    b.tx.commit().unwrap();
    a.tx.commit().unwrap();
    assert_eq!(f.rows().len(), 3);
    // A rolled-back insert's id is not reused; a reopened database starts
    // above the largest id stored.
    let mut c = f.begin();
    let lost = TxnStore::new(&mut c, &f.cache)
        .insert(&t, row(9, None, 9))
        .unwrap();
    c.tx.rollback();
    let next = insert(&f, row(4, None, 4)).unwrap();
    assert!(next > lost);
    let reopened = Fixture {
        mgr: f.mgr.clone(),
        cache: Shared::new(f.mgr.clone()),
    };
    let after = insert(&reopened, row(5, None, 5)).unwrap();
    assert!(after > next);
    let ids: Vec<i64> = reopened
        .rows()
        .iter()
        .map(|r| match r[0] {
            Value::Integer(i) => i,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 5], "row id order is insert order");
}

#[derive(Debug, Clone)]
enum Op {
    Insert(i64, Option<u8>, i64),
    Update(i64, i64, Option<u8>, i64),
    Delete(i64),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    let name = proptest::option::of(0u8..4);
    prop_oneof![
        (0i64..6, name.clone(), 0i64..3).prop_map(|(i, n, s)| Op::Insert(i, n, s)),
        (0i64..6, 0i64..6, name, 0i64..3).prop_map(|(i, j, n, s)| Op::Update(i, j, n, s)),
        (0i64..6).prop_map(Op::Delete),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Random inserts, updates and deletes against a model: the same
    /// constraint errors, the same rows, the same index answers, and a
    /// clean verifier after every step.
    #[test]
    fn store_matches_a_model(ops in proptest::collection::vec(op(), 1..25)) {
        use std::collections::BTreeMap;
        let f = Fixture::new().with_people();
        let mut model: BTreeMap<i64, (Option<u8>, i64)> = BTreeMap::new();
        let name_of = |n: Option<u8>| n.map(|n| format!("n{n}"));
        let taken = |model: &BTreeMap<i64, (Option<u8>, i64)>, n: Option<u8>, except: i64| {
            n.is_some() && model.iter().any(|(&k, v)| k != except && v.0 == n)
        };
        for op in ops {
            let result = match op.clone() {
                Op::Insert(id, n, score) => {
                    let expected = if model.contains_key(&id) {
                        Some("PRIMARY KEY")
                    } else if taken(&model, n, id) {
                        Some("UNIQUE")
                    } else {
                        model.insert(id, (n, score));
                        None
                    };
                    (expected, insert(&f, row(id, name_of(n).as_deref(), score)).map(|_| ()))
                }
                Op::Update(id, new_id, n, score) => {
                    let expected = if !model.contains_key(&id) {
                        None
                    } else if new_id != id && model.contains_key(&new_id) {
                        Some("PRIMARY KEY")
                    } else if taken(&model, n, id) {
                        Some("UNIQUE")
                    } else {
                        model.remove(&id);
                        model.insert(new_id, (n, score));
                        None
                    };
                    let result = f.run(|s| {
                        let t = s.table("people")?.unwrap();
                        if let Some((key, old)) = s.get_by_pk(&t, &[Value::Integer(id)])? {
                            s.update(&t, &key, &old, row(new_id, name_of(n).as_deref(), score))?;
                        }
                        Ok(())
                    });
                    (expected, result)
                }
                Op::Delete(id) => {
                    model.remove(&id);
                    let result = f.run(|s| {
                        let t = s.table("people")?.unwrap();
                        if let Some((key, old)) = s.get_by_pk(&t, &[Value::Integer(id)])? {
                            s.delete(&t, &key, &old)?;
                        }
                        Ok(())
                    });
                    (None, result)
                }
            };
            match result {
                (None, Ok(())) => {}
                (Some(c), Err(Error::Constraint { constraint, .. })) if c == constraint => {}
                (expected, got) => panic!("{op:?}: expected {expected:?}, got {got:?}"),
            }
            let report = f.check();
            proptest::prop_assert!(report.is_ok(), "after {:?}: {:?}", op, report);
        }
        let expected: Vec<Row> = model
            .iter()
            .map(|(&id, &(n, score))| row(id, name_of(n).as_deref(), score))
            .collect();
        proptest::prop_assert_eq!(f.rows(), expected);
        for score in 0..3 {
            let via_index: Vec<i64> = f.run(|s| {
                let t = s.table("people")?.unwrap();
                let v = vec![Value::Integer(score)];
                let range = IndexRange { start: Bound::Included(v.clone()), end: Bound::Included(v) };
                s.index_scan(&t, &t.indexes[1], &range)?
                    .map(|r| r.map(|(_, row)| match row[0] { Value::Integer(i) => i, _ => -1 }))
                    .collect()
            }).unwrap();
            let want: Vec<i64> = model.iter().filter(|(_, v)| v.1 == score).map(|(&k, _)| k).collect();
            proptest::prop_assert_eq!(via_index, want);
        }
    }
}

#[test]
fn two_allocators_never_overwrite_a_row() {
    let f = Fixture::new();
    let mut t = people();
    t.primary_key.clear();
    t.indexes.clear();
    f.run(|s| s.create_table(t)).unwrap();
    // A second database over the same manager, seeded now.
    let other = Fixture {
        mgr: f.mgr.clone(),
        cache: Shared::new(f.mgr.clone()),
    };
    insert(&other, row(1, None, 1)).unwrap();
    insert(&f, row(2, None, 2)).unwrap();
    insert(&other, row(3, None, 3)).unwrap();
    insert(&f, row(4, None, 4)).unwrap();
    let mut ids: Vec<Value> = f.rows().into_iter().map(|r| r[0].clone()).collect();
    ids.sort_by(|a, b| a.total_cmp(b));
    assert_eq!(ids, (1..=4).map(Value::Integer).collect::<Vec<_>>());
}

#[test]
fn repeated_scans_see_the_statements_own_writes() {
    let f = Fixture::new().with_people();
    insert(&f, row(1, Some("a"), 1)).unwrap();
    f.run(|s| {
        let t = s.table("people")?.unwrap();
        let all = |s: &TxnStore<'_>| -> Result<Vec<Row>> {
            s.scan(&t)?.map(|r| r.map(|(_, row)| row)).collect()
        };
        assert_eq!(all(s)?, vec![row(1, Some("a"), 1)]);
        assert_eq!(all(s)?, vec![row(1, Some("a"), 1)], "from the cache");
        let key = s.insert(&t, row(2, Some("b"), 2))?;
        assert_eq!(all(s)?.len(), 2);
        s.update(&t, &key, &row(2, Some("b"), 2), row(2, Some("c"), 3))?;
        assert_eq!(all(s)?[1], row(2, Some("c"), 3));
        let (key, old) = s.get_by_pk(&t, &[Value::Integer(1)])?.unwrap();
        s.delete(&t, &key, &old)?;
        assert_eq!(all(s)?, vec![row(2, Some("c"), 3)]);
        Ok(())
    })
    .unwrap();
}

// ------------------------------------------------------------ statistics

mod stats {
    use super::*;
    use crate::output::Output;
    use crate::plan::cost::Estimator;
    use crate::plan::stats::collect;
    use crate::session::Database;

    fn database(mgr: Arc<TxnManager>) -> Database {
        Database::new(mgr).unwrap()
    }

    fn stats_of(db: &Database, table: &str) -> Option<Arc<TableStats>> {
        crate::describe::catalog(db)
            .unwrap()
            .stats
            .get(table)
            .cloned()
    }

    /// `INSERT INTO t VALUES (..), (..)` for `rows`, as text.
    fn insert_sql(table: &str, rows: impl Iterator<Item = String>) -> String {
        format!(
            "INSERT INTO {table} VALUES {}",
            rows.collect::<Vec<_>>().join(", ")
        )
    }

    fn count(db: &Database, sql: &str) -> f64 {
        let out = db.session().execute(sql).unwrap();
        match out.last() {
            Some(Output::Rows(rows)) => rows.rows.len() as f64,
            other => panic!("{sql}: {other:?}"),
        }
    }

    /// The estimated rows of the optimized plan of query `sql`.
    fn estimated(mgr: &Arc<TxnManager>, sql: &str) -> f64 {
        let f = Fixture {
            mgr: mgr.clone(),
            cache: Shared::new(mgr.clone()),
        };
        let statement = crate::parser::parse(sql).unwrap().remove(0);
        let crate::ast::Statement::Query(q) = statement else {
            panic!("{sql} is not a query");
        };
        f.run(|s| {
            let est = Estimator::new(&*s);
            let bound = crate::bind::Binder::new(&*s).bind_query(&q)?;
            let plan = crate::plan::rules::optimize(bound.plan, &est);
            Ok(est.estimate(&plan).rows)
        })
        .unwrap()
    }

    #[test]
    fn estimates_after_analyze_are_within_a_factor_of_two() {
        let mgr = manager();
        let db = database(mgr.clone());
        let mut s = db.session();
        s.execute(
            "CREATE TABLE customers(id INTEGER PRIMARY KEY, region TEXT, vip BOOLEAN); \
             CREATE TABLE orders(id INTEGER PRIMARY KEY, cust INTEGER, status TEXT, \
                                 amount REAL, note TEXT); \
             CREATE INDEX orders_cust ON orders(cust)",
        )
        .unwrap();
        let regions = ["eu", "us", "us", "asia", "us"];
        s.execute(&insert_sql(
            "customers",
            (0..200).map(|i| format!("({i}, '{}', {})", regions[i % 5], i % 10 == 0)),
        ))
        .unwrap();
        // Skewed: 70% open, 25% closed, 5% void; amount NULL in 10%;
        // customer i*i % 200 (some customers have many orders).
        let status = |i: usize| match i % 20 {
            0 => "void",
            1..=5 => "closed",
            _ => "open",
        };
        s.execute(&insert_sql(
            "orders",
            (0..3000).map(|i| {
                let amount = if i % 10 == 3 {
                    "NULL".to_owned()
                } else {
                    format!("{}.5", (i * 37) % 1000)
                };
                format!(
                    "({i}, {}, '{}', {amount}, 'n{:05}')",
                    (i * i) % 200,
                    status(i),
                    (i * 7919) % 3000
                )
            }),
        ))
        .unwrap();
        s.execute("ANALYZE").unwrap();
        let queries = [
            "SELECT * FROM orders",
            "SELECT * FROM orders WHERE status = 'open'",
            "SELECT * FROM orders WHERE status = 'void'",
            "SELECT * FROM orders WHERE status <> 'open'",
            "SELECT * FROM orders WHERE amount IS NULL",
            "SELECT * FROM orders WHERE amount < 250",
            "SELECT * FROM orders WHERE amount BETWEEN 100 AND 600",
            "SELECT * FROM orders WHERE amount >= 900 AND status = 'open'",
            "SELECT * FROM orders WHERE status = 'void' OR amount > 500",
            "SELECT * FROM orders WHERE status IN ('void', 'closed')",
            "SELECT * FROM orders WHERE cust = 0",
            "SELECT * FROM orders WHERE cust < 50",
            "SELECT * FROM orders WHERE note < 'n00300'",
            "SELECT * FROM orders WHERE id > 2500",
            "SELECT * FROM customers WHERE region = 'us'",
            "SELECT * FROM orders JOIN customers ON orders.cust = customers.id",
            "SELECT * FROM orders JOIN customers ON orders.cust = customers.id \
             WHERE customers.region = 'eu'",
            "SELECT status, count(*) FROM orders GROUP BY status",
            "SELECT DISTINCT cust FROM orders",
            "SELECT region, vip, count(*) FROM customers GROUP BY region, vip",
        ];
        for sql in queries {
            let (estimate, actual) = (estimated(&mgr, sql), count(&db, sql));
            let ratio = estimate / actual;
            assert!(
                (0.5..=2.0).contains(&ratio),
                "{sql}: estimated {estimate} rows, actually {actual}"
            );
        }
    }

    #[test]
    fn statistics_survive_reopen_and_a_rolled_back_analyze_keeps_the_old_ones() {
        use pydb_storage::{EngineConfig, EngineKind, open_engine};
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            let engine = open_engine(dir.path(), &EngineConfig::new(EngineKind::BTree)).unwrap();
            let options = pydb_txn::Options {
                gc_interval: None,
                ..pydb_txn::Options::default()
            };
            Arc::new(TxnManager::open(engine, options).unwrap())
        };
        let mgr = open();
        let db = database(mgr.clone());
        let mut s = db.session();
        s.execute("CREATE TABLE t(a INTEGER, b TEXT); CREATE TABLE u(x INTEGER)")
            .unwrap();
        s.execute(&insert_sql(
            "t",
            (0..100).map(|i| format!("({}, 'v{}')", i % 10, i % 3)),
        ))
        .unwrap();
        assert_eq!(stats_of(&db, "t"), None);
        s.execute("ANALYZE t").unwrap();
        let first = stats_of(&db, "t").unwrap();
        assert_eq!(first.row_count, 100);
        assert_eq!(first.columns[0].distinct, 10);
        assert_eq!(first.columns[1].distinct, 3);
        assert_eq!(stats_of(&db, "u"), None, "ANALYZE t analyzes t only");

        // ANALYZE inside a transaction that rolls back: the old stats.
        s.execute("BEGIN; INSERT INTO t VALUES (99, 'w'); ANALYZE; ROLLBACK")
            .unwrap();
        assert_eq!(stats_of(&db, "t"), Some(first.clone()));
        assert_eq!(stats_of(&db, "u"), None);

        // Stale statistics change plans, not results.
        s.execute("INSERT INTO t VALUES (99, 'w'), (98, 'w')")
            .unwrap();
        assert_eq!(count(&db, "SELECT * FROM t WHERE a >= 98"), 2.0);

        s.execute("ANALYZE").unwrap();
        let second = stats_of(&db, "t").unwrap();
        assert_eq!(second.row_count, 102);
        assert_eq!(stats_of(&db, "u").unwrap().row_count, 0);
        assert!(crate::check::check(&db).unwrap().is_ok());

        drop(s);
        drop(db);
        mgr.engine().flush().unwrap();
        drop(mgr);
        let mgr = open();
        let db = database(mgr.clone());
        assert_eq!(stats_of(&db, "t"), Some(second));

        // DROP TABLE deletes its statistics; a new table of that name has
        // none.
        let mut s = db.session();
        s.execute("DROP TABLE t; CREATE TABLE t(z TEXT)").unwrap();
        assert_eq!(stats_of(&db, "t"), None);
        assert!(crate::check::check(&db).unwrap().is_ok());
    }

    #[test]
    fn verifier_catches_a_damaged_stats_record_and_queries_still_run() {
        let f = Fixture::new().with_people();
        for i in 1..=5 {
            insert(&f, row(i, Some(&format!("p{i}")), i % 2)).unwrap();
        }
        let rows = f.rows();
        f.run(|s| {
            let t = s.table("people")?.unwrap();
            s.set_table_stats(&t, collect(rows.clone(), 3))
        })
        .unwrap();
        assert!(f.check().is_ok());
        let stats = f
            .run(|s| {
                let t = s.table("people")?.unwrap();
                s.table_stats(&t)
            })
            .unwrap()
            .unwrap();
        assert_eq!(stats.row_count, 5);

        // Plant a truncated stats record, and one for no table.
        let key = layout::catalog_key(CATALOG_STATS, "people");
        let mut tx = f.mgr.begin(Isolation::Snapshot).unwrap();
        let good = space_get(&tx, &key).unwrap().unwrap();
        space_set(&mut tx, &key, &good[..good.len() - 3]).unwrap();
        space_set(&mut tx, &layout::catalog_key(CATALOG_STATS, "ghost"), &good).unwrap();
        // Bump the catalog version, as DDL would, so caches reload.
        space_set(&mut tx, &layout::CATALOG_VERSION, &77u64.to_le_bytes()).unwrap();
        tx.commit().unwrap();
        let problems = f.check().problems.join("\n");
        assert!(problems.contains("people: stats record"), "{problems}");
        assert!(problems.contains("ghost: stats record"), "{problems}");

        // The damage is a Corrupted error for whoever asks for the
        // statistics; the optimizer treats it as no statistics, so queries
        // still answer.
        let result = f.run(|s| {
            let t = s.table("people")?.unwrap();
            s.table_stats(&t)
        });
        assert!(matches!(result, Err(Error::Corrupted(_))), "{result:?}");
        assert_eq!(f.rows().len(), 5);
        let est = f
            .run(|s| {
                let t = s.table("people")?.unwrap();
                Ok(Estimator::new(&*s).table_rows(&t))
            })
            .unwrap();
        assert_eq!(est, crate::plan::cost::DEFAULT_TABLE_ROWS);
    }
}

/// Inserts people 1..=n (id, name `p{id}`, `2 * id`).
fn fill_people(f: &Fixture, n: i64) {
    f.run(|s| {
        let t = s.table("people")?.unwrap();
        (1..=n).try_for_each(|i| {
            s.insert(&t, row(i, Some(&format!("p{i}")), 2 * i))
                .map(drop)
        })
    })
    .unwrap();
}

/// Every row a scan of `people` (its first and third columns, with
/// `bounds`) hands out, and the error it ended with, if any.
fn scan_people(f: &Fixture, bounds: &[IntegerBound]) -> (Vec<Row>, Option<Error>) {
    let mut open = f.begin();
    let s = TxnStore::new(&mut open, &f.cache);
    let t = s.table("people").unwrap().unwrap();
    let mut cursor = s.scan_cursor(&t, &[true, false, true], bounds).unwrap();
    let (mut rows, mut row) = (Vec::new(), Vec::new());
    loop {
        match cursor.next_into(&mut row) {
            Ok(true) => rows.push(row.clone()),
            Ok(false) => return (rows, None),
            Err(err) => return (rows, Some(err)),
        }
    }
}

/// Person `i` as [`scan_people`] hands it out: the name not decoded.
fn narrowed_person(i: i64) -> Row {
    vec![Value::Integer(i), Value::Null, Value::Integer(2 * i)]
}

/// A table scan decodes its rows in batches (32, 64, ... rows) inside the
/// transaction layer's walk of the engine: across batches every row comes
/// once, in key order, with only the wanted columns built; a damaged row
/// is an error after the rows before it (never a panic, a wrong row or a
/// silent end), and a row of the wrong width is one too.
#[test]
fn a_batched_scan_hands_every_row_then_the_damage() {
    let (f, n) = (Fixture::new().with_people(), 700);
    fill_people(&f, n);
    let scan = |f: &Fixture| scan_people(f, &[]);
    let (rows, err) = scan(&f);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(rows, (1..=n).map(narrowed_person).collect::<Vec<_>>());
    let t = f.run(|s| s.table("people")).unwrap().unwrap();
    for (at, damage) in [
        (500, b"\x01\xff".to_vec()),
        (100, encode_row(&[Value::Integer(100)])),
    ] {
        let mut tx = f.mgr.begin(Isolation::Snapshot).unwrap();
        let key = layout::row_key(t.id, &encode_key(&[Value::Integer(at)]));
        space_set(&mut tx, &key, &damage).unwrap();
        tx.commit().unwrap();
        let (rows, err) = scan(&f);
        assert!(matches!(err, Some(Error::Corrupted(_))), "{err:?}");
        assert_eq!(rows, (1..at).map(narrowed_person).collect::<Vec<_>>());
    }
}

/// A scan given integer bounds hands exactly the rows they keep, across
/// many batches in a row whose every row is dropped; a row dropped by its
/// first column is not read further (damage after that column goes
/// unseen), but damage a scan reads (in a kept row, or before the
/// rejecting column) is still the scan's error.
#[test]
fn a_bounded_scan_drops_only_rejected_rows_and_still_finds_the_damage() {
    let (f, n) = (Fixture::new().with_people(), 700);
    fill_people(&f, n);
    let bounds = [
        IntegerBound {
            column: 2,
            low: 1200,
            high: 1300,
        },
        IntegerBound {
            column: 0,
            low: i64::MIN,
            high: 605,
        },
    ];
    let scan = |f: &Fixture| scan_people(f, &bounds);
    let (rows, err) = scan(&f);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(rows, (600..=605).map(narrowed_person).collect::<Vec<_>>());
    let t = f.run(|s| s.table("people")).unwrap().unwrap();
    let damage = |id: i64, bytes: &[u8]| {
        let mut tx = f.mgr.begin(Isolation::Snapshot).unwrap();
        let key = layout::row_key(t.id, &encode_key(&[Value::Integer(id)]));
        space_set(&mut tx, &key, bytes).unwrap();
        tx.commit().unwrap();
    };
    // Row 650: its name's tag made invalid, after `id`, which rejects it.
    let mut bad_name = encode_row(&row(650, Some("p650"), 1300));
    // The version, the count, then `id`: its tag and a two-byte varint.
    assert_eq!(bad_name[2..5], [0x01, 0x94, 0x0A]);
    bad_name[5] = 0x09;
    damage(650, &bad_name);
    let (rows, err) = scan(&f);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(rows, (600..=605).map(narrowed_person).collect::<Vec<_>>());
    // Row 602, kept by both bounds: a byte after its last column.
    let mut trailing = encode_row(&row(602, Some("p602"), 1204));
    trailing.push(0);
    damage(602, &trailing);
    let (rows, err) = scan(&f);
    assert!(matches!(err, Some(Error::Corrupted(_))), "{err:?}");
    assert_eq!(rows, (600..=601).map(narrowed_person).collect::<Vec<_>>());
    // Row 100, dropped by its last column: its column count damaged.
    damage(100, b"\x01\xff");
    let (rows, err) = scan(&f);
    assert!(matches!(err, Some(Error::Corrupted(_))), "{err:?}");
    assert!(rows.is_empty(), "{rows:?}");
}

/// A scan given a hash join's key bits (`RowCursor::drop_absent_keys`)
/// hands up exactly the rows whose column holds an integer the bits may
/// hold, on any column, from the next batch on: with bits of three ids,
/// the three and the few others that share their bits, not the 700.
#[test]
fn a_scan_drops_the_rows_whose_key_the_bits_prove_absent() {
    let (f, n) = (Fixture::new().with_people(), 700);
    fill_people(&f, n);
    let ids = KeyBits::of([5i64, 77, 600].into_iter());
    let doubled = KeyBits::of([10i64, 1200].into_iter());
    let mut open = f.begin();
    let s = TxnStore::new(&mut open, &f.cache);
    let t = s.table("people").unwrap().unwrap();
    let mut cursor = s.scan_cursor(&t, &[true, false, true], &[]).unwrap();
    cursor.drop_absent_keys(0, ids.clone());
    cursor.drop_absent_keys(2, doubled.clone());
    let (mut rows, mut row) = (Vec::new(), Vec::new());
    while cursor.next_into(&mut row).unwrap() {
        rows.push(row.clone());
    }
    let expected: Vec<Row> = (1..=n)
        .filter(|&i| ids.may_hold(i) && doubled.may_hold(2 * i))
        .map(narrowed_person)
        .collect();
    assert_eq!(rows, expected);
    assert!(rows.contains(&narrowed_person(5)) && rows.contains(&narrowed_person(600)));
    assert!(rows.len() < 50, "{} rows", rows.len());
}
