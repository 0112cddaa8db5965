//! Guards the isolation levels: the ten anomalies of Kleppmann's
//! Hermitage, for every level x concurrency control x engine, each
//! asserting the row the level must show; and docs/isolation.md, generated
//! from the results (PYDB_UPDATE_DOCS=1 rewrites it).

#![allow(clippy::unwrap_used)]

mod common;

use std::fmt::Write as _;

use common::Kind;
use pydb_txn::{Concurrency, Isolation, LockWait, Transaction, TxnManager, TxnOptions};
use rstest::rstest;

/// What a script observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The anomaly happened.
    Anomaly,
    /// It did not (by an abort, or because reads never saw it).
    Prevented,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anomaly {
    G0,
    G1a,
    G1b,
    G1c,
    Otv,
    Pmp,
    P4,
    GSingle,
    G2Item,
    G2,
}

impl Anomaly {
    const ALL: [Anomaly; 10] = [
        Anomaly::G0,
        Anomaly::G1a,
        Anomaly::G1b,
        Anomaly::G1c,
        Anomaly::Otv,
        Anomaly::Pmp,
        Anomaly::P4,
        Anomaly::GSingle,
        Anomaly::G2Item,
        Anomaly::G2,
    ];

    fn name(self) -> &'static str {
        match self {
            Anomaly::G0 => "G0",
            Anomaly::G1a => "G1a",
            Anomaly::G1b => "G1b",
            Anomaly::G1c => "G1c",
            Anomaly::Otv => "OTV",
            Anomaly::Pmp => "PMP",
            Anomaly::P4 => "P4",
            Anomaly::GSingle => "G-single",
            Anomaly::G2Item => "G2-item",
            Anomaly::G2 => "G2",
        }
    }

    fn run(self, h: &Harness) -> Outcome {
        match self {
            Anomaly::G0 => g0(h),
            Anomaly::G1a => g1a(h),
            Anomaly::G1b => g1b(h),
            Anomaly::G1c => g1c(h),
            Anomaly::Otv => otv(h),
            Anomaly::Pmp => pmp(h),
            Anomaly::P4 => p4(h),
            Anomaly::GSingle => g_single(h),
            Anomaly::G2Item => g2_item(h),
            Anomaly::G2 => g2(h),
        }
    }
}

/// The row each level must show. MVCC read committed and snapshot are
/// PostgreSQL's READ COMMITTED and REPEATABLE READ rows of Hermitage;
/// serializable and strict two-phase locking prevent everything.
fn expected(level: Isolation, cc: Concurrency, anomaly: Anomaly) -> Outcome {
    use Anomaly::*;
    let allowed: &[Anomaly] = match (cc, level) {
        (Concurrency::Locking, _) | (_, Isolation::Serializable) => &[],
        (_, Isolation::Snapshot) => &[G2Item, G2],
        (_, Isolation::ReadCommitted) => &[Pmp, P4, GSingle, G2Item, G2],
    };
    if allowed.contains(&anomaly) {
        Outcome::Anomaly
    } else {
        Outcome::Prevented
    }
}

/// A database with keys 1 = 10 and 2 = 20, and the level and control of
/// the transactions under test. Locking transactions do not wait (a
/// conflict aborts the requester at once), so one thread can drive the
/// interleaving.
struct Harness {
    _dir: tempfile::TempDir,
    mgr: TxnManager,
    level: Isolation,
    cc: Concurrency,
}

impl Harness {
    fn new(kind: Kind, level: Isolation, cc: Concurrency) -> Self {
        let dir = common::scratch();
        let mgr = TxnManager::open(kind.open(dir.path()), common::options()).unwrap();
        let mut setup = mgr.begin(Isolation::Serializable).unwrap();
        setup.set(b"1", b"10").unwrap();
        setup.set(b"2", b"20").unwrap();
        setup.commit().unwrap();
        Self {
            _dir: dir,
            mgr,
            level,
            cc,
        }
    }

    fn begin(&self) -> Tx {
        let options = TxnOptions::new(self.level)
            .concurrency(self.cc)
            .lock_wait(LockWait::NoWait);
        Tx(Some(self.mgr.begin_with(options).unwrap()))
    }

    /// Every key and value after the script, read by a fresh transaction.
    fn contents(&self) -> Vec<(String, i64)> {
        self.begin().scan().unwrap()
    }
}

/// A transaction under test: a retryable error aborts it (the slot
/// empties and its later steps do nothing); any other error fails the test.
struct Tx(Option<Transaction>);

fn parse(v: &[u8]) -> i64 {
    std::str::from_utf8(v).unwrap().parse().unwrap()
}

impl Tx {
    fn fail(&mut self, err: pydb_txn::Error) {
        assert!(err.is_retryable(), "unexpected error: {err}");
        self.0 = None;
    }

    fn get(&mut self, key: u32) -> Option<Option<i64>> {
        let result = self.0.as_ref()?.get(key.to_string().as_bytes());
        match result {
            Ok(v) => Some(v.map(|v| parse(&v))),
            Err(err) => {
                self.fail(err);
                None
            }
        }
    }

    fn scan(&mut self) -> Option<Vec<(String, i64)>> {
        let result: Result<Vec<_>, _> = self
            .0
            .as_ref()?
            .scan::<&[u8]>(..)
            .and_then(Iterator::collect);
        match result {
            Ok(rows) => Some(
                rows.into_iter()
                    .map(|(k, v)| (String::from_utf8(k.to_vec()).unwrap(), parse(&v)))
                    .collect(),
            ),
            Err(err) => {
                self.fail(err);
                None
            }
        }
    }

    fn set(&mut self, key: u32, value: i64) {
        let Some(tx) = self.0.as_mut() else { return };
        if let Err(err) = tx.set(key.to_string().as_bytes(), value.to_string().as_bytes()) {
            self.fail(err);
        }
    }

    /// Commits; true if it committed.
    fn commit(&mut self) -> bool {
        let Some(tx) = self.0.take() else {
            return false;
        };
        match tx.commit() {
            Ok(_) => true,
            Err(err) => {
                self.fail(err);
                false
            }
        }
    }

    fn rollback(&mut self) {
        if let Some(tx) = self.0.take() {
            tx.rollback();
        }
    }
}

fn outcome(anomaly: bool) -> Outcome {
    if anomaly {
        Outcome::Anomaly
    } else {
        Outcome::Prevented
    }
}

fn value(rows: &[(String, i64)], key: &str) -> Option<i64> {
    rows.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

/// G0, write cycles: two transactions write x and y in opposite orders;
/// the final state must not mix x of one with y of the other.
fn g0(h: &Harness) -> Outcome {
    let (mut t1, mut t2) = (h.begin(), h.begin());
    t1.set(1, 11);
    t2.set(1, 12);
    t1.set(2, 21);
    t1.commit();
    t2.set(2, 22);
    t2.commit();
    let rows = h.contents();
    let (x, y) = (value(&rows, "1"), value(&rows, "2"));
    outcome(matches!(
        (x, y),
        (Some(11), Some(22)) | (Some(12), Some(21))
    ))
}

/// G1a, aborted reads: a transaction must never see a write that is
/// rolled back.
fn g1a(h: &Harness) -> Outcome {
    let (mut t1, mut t2) = (h.begin(), h.begin());
    t1.set(1, 101);
    t1.set(2, 102);
    let before = t2.scan();
    t1.rollback();
    let after = t2.scan();
    t2.commit();
    let saw = |rows: &Option<Vec<(String, i64)>>| {
        rows.as_ref()
            .is_some_and(|r| r.iter().any(|(_, v)| *v > 100))
    };
    outcome(saw(&before) || saw(&after))
}

/// G1b, intermediate reads: a transaction must never see a value another
/// one later overwrote before committing.
fn g1b(h: &Harness) -> Outcome {
    let (mut t1, mut t2) = (h.begin(), h.begin());
    t1.set(1, 101);
    let early = t2.get(1);
    t1.set(1, 11);
    t1.commit();
    let late = t2.get(1);
    t2.commit();
    outcome(early == Some(Some(101)) || late == Some(Some(101)))
}

/// G1c, circular information flow: each of two transactions sees the
/// other's uncommitted write.
fn g1c(h: &Harness) -> Outcome {
    let (mut t1, mut t2) = (h.begin(), h.begin());
    t1.set(1, 11);
    t2.set(2, 22);
    let t1_saw = t1.get(2);
    let t2_saw = t2.get(1);
    t1.commit();
    t2.commit();
    outcome(t1_saw == Some(Some(22)) || t2_saw == Some(Some(11)))
}

/// OTV, observed transaction vanishes: T3 sees T1's x, then a y that is
/// not T1's although T1 committed both and T2 has not committed.
fn otv(h: &Harness) -> Outcome {
    let (mut t1, mut t2, mut t3) = (h.begin(), h.begin(), h.begin());
    t1.set(1, 11);
    t1.set(2, 19);
    t2.set(1, 12);
    t1.commit();
    let x = t3.get(1);
    t2.set(2, 18);
    let y = t3.get(2);
    t2.commit();
    t3.commit();
    outcome(x == Some(Some(11)) && y == Some(Some(18)))
}

/// PMP, predicate-many-preceders: a predicate read repeated in one
/// transaction sees a row a concurrent transaction inserted meanwhile.
fn pmp(h: &Harness) -> Outcome {
    let (mut t1, mut t2) = (h.begin(), h.begin());
    let first = t1
        .scan()
        .map(|rows| rows.iter().filter(|(_, v)| *v == 30).count());
    t2.set(3, 30);
    t2.commit();
    let second = t1
        .scan()
        .map(|rows| rows.iter().filter(|(_, v)| v % 3 == 0).count());
    t1.commit();
    outcome(first == Some(0) && second.is_some_and(|n| n > 0))
}

/// P4, lost update: two read-modify-write increments both commit, and the
/// final value shows only one.
fn p4(h: &Harness) -> Outcome {
    let (mut t1, mut t2) = (h.begin(), h.begin());
    let r1 = t1.get(1);
    let r2 = t2.get(1);
    if let Some(Some(v)) = r1 {
        t1.set(1, v + 1);
    }
    if let Some(Some(v)) = r2 {
        t2.set(1, v + 1);
    }
    let c1 = t1.commit();
    let c2 = t2.commit();
    let x = value(&h.contents(), "1");
    outcome(c1 && c2 && x == Some(11))
}

/// G-single, read skew: T1 reads x, T2 moves 2 from y... and commits, and
/// T1 then reads T2's y: it saw x before T2 and y after.
fn g_single(h: &Harness) -> Outcome {
    let (mut t1, mut t2) = (h.begin(), h.begin());
    let x = t1.get(1);
    t2.get(1);
    t2.get(2);
    t2.set(1, 12);
    t2.set(2, 18);
    t2.commit();
    let y = t1.get(2);
    t1.commit();
    outcome(x == Some(Some(10)) && y == Some(Some(18)))
}

/// G2-item, write skew: each reads both keys and writes a different one;
/// both commit.
fn g2_item(h: &Harness) -> Outcome {
    let (mut t1, mut t2) = (h.begin(), h.begin());
    t1.get(1);
    t1.get(2);
    t2.get(1);
    t2.get(2);
    t1.set(1, 11);
    t2.set(2, 21);
    let c1 = t1.commit();
    let c2 = t2.commit();
    outcome(c1 && c2)
}

/// G2, anti-dependency cycles over a predicate: each scans for multiples
/// of 3, finds none, and inserts one; both commit.
fn g2(h: &Harness) -> Outcome {
    let (mut t1, mut t2) = (h.begin(), h.begin());
    let none =
        |rows: Option<Vec<(String, i64)>>| rows.is_some_and(|r| r.iter().all(|(_, v)| v % 3 != 0));
    let a = none(t1.scan());
    let b = none(t2.scan());
    t1.set(3, 30);
    t2.set(4, 42);
    let c1 = t1.commit();
    let c2 = t2.commit();
    outcome(a && b && c1 && c2)
}

fn check(anomaly: Anomaly, kind: Kind, level: Isolation, cc: Concurrency) {
    let h = Harness::new(kind, level, cc);
    assert_eq!(
        anomaly.run(&h),
        expected(level, cc, anomaly),
        "{} under {level:?} / {cc:?} on {kind:?}",
        anomaly.name()
    );
}

macro_rules! matrix {
    ($($name:ident => $anomaly:expr),* $(,)?) => {$(
        #[rstest]
        fn $name(
            #[values(Kind::Memory, Kind::Log, Kind::BTree)] kind: Kind,
            #[values(Isolation::ReadCommitted, Isolation::Snapshot, Isolation::Serializable)]
            level: Isolation,
            #[values(Concurrency::Mvcc, Concurrency::Locking)] cc: Concurrency,
        ) {
            check($anomaly, kind, level, cc);
        }
    )*};
}

matrix! {
    g0_write_cycles => Anomaly::G0,
    g1a_aborted_reads => Anomaly::G1a,
    g1b_intermediate_reads => Anomaly::G1b,
    g1c_circular_information_flow => Anomaly::G1c,
    otv_observed_transaction_vanishes => Anomaly::Otv,
    pmp_predicate_many_preceders => Anomaly::Pmp,
    p4_lost_update => Anomaly::P4,
    g_single_read_skew => Anomaly::GSingle,
    g2_item_write_skew => Anomaly::G2Item,
    g2_anti_dependency_cycles => Anomaly::G2,
}

fn level_name(level: Isolation) -> &'static str {
    match level {
        Isolation::ReadCommitted => "ReadCommitted",
        Isolation::Snapshot => "Snapshot",
        Isolation::Serializable => "Serializable",
    }
}

/// Runs the whole matrix on every engine and renders the table; engines
/// must agree with each other.
fn render() -> String {
    let mut out = String::new();
    out.push_str(
        "# Isolation levels: the anomaly matrix\n\n\
         Generated by `crates/pydb-txn/tests/anomalies.rs` from the results of the\n\
         anomaly tests; do not edit by hand. Regenerate with\n\
         `PYDB_UPDATE_DOCS=1 cargo test -p pydb-txn --test anomalies`; the test\n\
         `isolation_doc_matches_the_results` fails when this file and the results differ.\n\n\
         Each cell is the outcome of one of Kleppmann's [Hermitage](https://github.com/ept/hermitage)\n\
         cases, rewritten for a key-value store (keys `1` = 10 and `2` = 20), run on every\n\
         engine (memory, append-only log with a B-tree index, B+tree); all engines agree.\n\
         *prevented* means the anomaly was not observed: a read never saw it, or a\n\
         transaction was aborted (a write conflict, a serialization failure, or a lock\n\
         that was not free: the locking runs use the no-wait mode so one thread can\n\
         drive the interleaving). *anomaly* means it happened and both transactions\n\
         committed.\n\n\
         MVCC `ReadCommitted` shows PostgreSQL's READ COMMITTED row, MVCC `Snapshot`\n\
         PostgreSQL's REPEATABLE READ row (write skew, G2-item and G2, allowed),\n\
         `Serializable` (SSI) and strict two-phase locking prevent all ten. Under locking\n\
         every level is serializable.\n\n",
    );
    out.push_str("| level | control |");
    for a in Anomaly::ALL {
        write!(out, " {} |", a.name()).unwrap();
    }
    out.push_str("\n|---|---|");
    for _ in Anomaly::ALL {
        out.push_str("---|");
    }
    out.push('\n');
    for cc in [Concurrency::Mvcc, Concurrency::Locking] {
        for level in Isolation::ALL {
            let control = match cc {
                Concurrency::Mvcc => "MVCC",
                Concurrency::Locking => "2PL",
            };
            write!(out, "| {} | {control} |", level_name(level)).unwrap();
            for a in Anomaly::ALL {
                let results: Vec<Outcome> = Kind::ALL
                    .iter()
                    .map(|&kind| a.run(&Harness::new(kind, level, cc)))
                    .collect();
                assert!(
                    results.windows(2).all(|w| w[0] == w[1]),
                    "engines disagree on {} under {level:?}/{cc:?}: {results:?}",
                    a.name()
                );
                let cell = match results[0] {
                    Outcome::Anomaly => "anomaly",
                    Outcome::Prevented => "prevented",
                };
                write!(out, " {cell} |").unwrap();
            }
            out.push('\n');
        }
    }
    out
}

#[test]
fn isolation_doc_matches_the_results() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/isolation.md");
    let rendered = render();
    if std::env::var_os("PYDB_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == rendered,
        "docs/isolation.md disagrees with the test results; rerun with PYDB_UPDATE_DOCS=1.\n\
         results:\n{rendered}"
    );
}
