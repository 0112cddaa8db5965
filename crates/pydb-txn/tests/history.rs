//! Guards serializability with a history checker: threads run list-append
//! transactions (read two lists, append a unique element to one), and the
//! checker rebuilds the dependency graph of the committed transactions
//! (ww, wr, rw edges, Adya's DSG) from what they read and the final lists,
//! and looks for a cycle. Serializable and locking histories must have
//! none; snapshot histories must show write skew (G2-item), or the checker
//! checks nothing.
//!
//! As in Jepsen's list-append, the keys rotate: every `EPOCH` attempts the
//! threads move to a fresh window of `KEYS` keys, so that lists stay short
//! while the window stays contended. Reads are recorded as (length, hash)
//! and checked against the final lists' prefixes.
//!
//! Short by default; `PYDB_HISTORY_TXNS=100000 cargo test --release -p
//! pydb-txn --test history` runs the long mode.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Db, Kind};
use pydb_txn::{Concurrency, Isolation, LockWait, TxnManager, TxnOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const THREADS: usize = 8;
const KEYS: usize = 4;
/// Attempts per key window.
const EPOCH: u64 = 1000;

/// One read of a list: its key, length and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Read {
    key: usize,
    len: usize,
    hash: u64,
}

/// The hash of a list, extended one element at a time (so the prefixes
/// of a final list hash the same way).
fn extend_hash(hash: u64, element: u64) -> u64 {
    hash.wrapping_mul(0x100_0000_01b3)
        .wrapping_add(element ^ 0x9e37_79b9_7f4a_7c15)
}

impl Read {
    fn of(key: usize, list: &[u64]) -> Self {
        Read {
            key,
            len: list.len(),
            hash: list.iter().fold(0, |h, e| extend_hash(h, *e)),
        }
    }
}

/// One committed transaction: what it read and what it appended.
#[derive(Debug, Clone, Default)]
struct Record {
    reads: Vec<Read>,
    appends: Vec<(usize, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Edge {
    Ww,
    Wr,
    Rw,
}

/// What the checker found.
#[derive(Debug, Default)]
struct Findings {
    /// Structural violations (lost appends, aborted or phantom elements,
    /// reads that are not a prefix of the final list).
    violations: Vec<String>,
    /// A dependency cycle, as (transaction, edge to the next) pairs.
    cycle: Option<Vec<(usize, Edge)>>,
}

fn encode(list: &[u64]) -> Vec<u8> {
    list.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
        .into_bytes()
}

fn decode(bytes: Option<&[u8]>) -> Vec<u64> {
    match bytes {
        None | Some(b"") => Vec::new(),
        Some(b) => std::str::from_utf8(b)
            .unwrap()
            .split(',')
            .map(|e| e.parse().unwrap())
            .collect(),
    }
}

fn key(k: usize) -> Vec<u8> {
    format!("list{k:08}").into_bytes()
}

/// Runs `total` transactions over `THREADS` threads; returns the committed
/// records and the final lists (indexed by key).
fn run(mgr: &TxnManager, options: &TxnOptions, total: usize) -> (Vec<Record>, Vec<Vec<u64>>) {
    let next_element = AtomicU64::new(1);
    let per_thread = total.div_ceil(THREADS);
    let records: Vec<Record> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let next_element = &next_element;
                s.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(t as u64);
                    let mut committed = Vec::new();
                    while committed.len() < per_thread {
                        let element = next_element.fetch_add(1, Ordering::Relaxed);
                        let window = (element / EPOCH) as usize * KEYS;
                        let a = rng.random_range(0..KEYS);
                        let b = (a + rng.random_range(1..KEYS)) % KEYS;
                        let (a, b) = (window + a, window + b);
                        let target = if rng.random_bool(0.5) { a } else { b };
                        let pause = rng.random_bool(0.5);
                        let attempt = (|| -> pydb_txn::Result<Record> {
                            let mut tx = mgr.begin_with(options.clone())?;
                            let mut record = Record::default();
                            let mut target_list = Vec::new();
                            for k in [a, b] {
                                let list = decode(tx.get(&key(k))?.as_deref());
                                record.reads.push(Read::of(k, &list));
                                if k == target {
                                    target_list = list;
                                }
                            }
                            if pause {
                                // Widen the window in which others interleave.
                                std::thread::sleep(Duration::from_micros(200));
                            }
                            target_list.push(element);
                            tx.set(&key(target), &encode(&target_list))?;
                            record.appends.push((target, element));
                            tx.commit()?;
                            Ok(record)
                        })();
                        match attempt {
                            Ok(record) => committed.push(record),
                            Err(err) if err.is_retryable() => {}
                            Err(err) => panic!("{err}"),
                        }
                    }
                    committed
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let tx = mgr.begin(Isolation::Snapshot).unwrap();
    let mut finals = Vec::new();
    for item in tx.scan::<&[u8]>(..).unwrap() {
        let (k, list) = item.unwrap();
        let k: usize = std::str::from_utf8(&k[4..]).unwrap().parse().unwrap();
        finals.resize(finals.len().max(k + 1), Vec::new());
        finals[k] = decode(Some(&list));
    }
    (records, finals)
}

/// Builds the dependency graph and looks for violations and a cycle.
fn check(records: &[Record], finals: &[Vec<u64>]) -> Findings {
    let mut findings = Findings::default();
    let empty = Vec::new();
    let final_of = |k: usize| finals.get(k).unwrap_or(&empty);
    // Where each element sits in the final lists, and how often.
    let mut placed: HashMap<u64, (usize, usize)> = HashMap::new();
    for (k, list) in finals.iter().enumerate() {
        for e in list {
            placed.entry(*e).or_insert((k, 0)).1 += 1;
        }
    }
    let mut writer: HashMap<u64, usize> = HashMap::new();
    for (t, r) in records.iter().enumerate() {
        for &(k, e) in &r.appends {
            writer.insert(e, t);
            let times = match placed.get(&e) {
                Some(&(key, n)) if key == k => n,
                _ => 0,
            };
            if times != 1 {
                findings.violations.push(format!(
                    "committed append {e} to list{k} appears {times} times"
                ));
            }
        }
    }
    for (k, list) in finals.iter().enumerate() {
        for e in list {
            if !writer.contains_key(e) {
                findings.violations.push(format!(
                    "list{k} holds {e}, which no committed transaction appended"
                ));
            }
        }
    }
    // Prefix hashes of the final lists: prefixes[k][n] hashes the first n.
    let prefixes: Vec<Vec<u64>> = finals
        .iter()
        .map(|list| {
            let mut hashes = vec![0];
            for e in list {
                hashes.push(extend_hash(*hashes.last().unwrap(), *e));
            }
            hashes
        })
        .collect();
    let mut edges: HashMap<(usize, usize), Edge> = HashMap::new();
    let mut add = |from: usize, to: usize, kind: Edge| {
        if from != to {
            edges.entry((from, to)).or_insert(kind);
        }
    };
    for list in finals {
        for pair in list.windows(2) {
            if let (Some(&a), Some(&b)) = (writer.get(&pair[0]), writer.get(&pair[1])) {
                add(a, b, Edge::Ww);
            }
        }
    }
    for (t, r) in records.iter().enumerate() {
        for read in &r.reads {
            let full = final_of(read.key);
            let prefix = prefixes.get(read.key).and_then(|p| p.get(read.len));
            if read.len > 0 && prefix != Some(&read.hash) {
                findings.violations.push(format!(
                    "transaction {t} read {} elements of list{} that are not a prefix of its final {} elements",
                    read.len,
                    read.key,
                    full.len()
                ));
                continue;
            }
            if let Some(&w) = read
                .len
                .checked_sub(1)
                .and_then(|i| full.get(i))
                .and_then(|e| writer.get(e))
            {
                add(w, t, Edge::Wr);
            }
            if let Some(&w) = full.get(read.len).and_then(|e| writer.get(e)) {
                add(t, w, Edge::Rw);
            }
        }
    }
    findings.cycle = find_cycle(records.len(), &edges);
    findings
}

/// A cycle in the graph, if any: Kahn's algorithm peels off every node
/// not on or behind a cycle; from what is left, walk until a node repeats.
fn find_cycle(n: usize, edges: &HashMap<(usize, usize), Edge>) -> Option<Vec<(usize, Edge)>> {
    let mut out: Vec<Vec<(usize, Edge)>> = vec![Vec::new(); n];
    let mut indegree = vec![0usize; n];
    for (&(a, b), &kind) in edges {
        out[a].push((b, kind));
        indegree[b] += 1;
    }
    let mut queue: VecDeque<usize> = (0..n).filter(|&v| indegree[v] == 0).collect();
    let mut removed = vec![false; n];
    while let Some(v) = queue.pop_front() {
        removed[v] = true;
        for &(w, _) in &out[v] {
            indegree[w] -= 1;
            if indegree[w] == 0 {
                queue.push_back(w);
            }
        }
    }
    let left = removed.iter().filter(|r| !**r).count();
    let start = (0..n).find(|&v| !removed[v])?;
    eprintln!("{left} of {n} transactions are on or behind a dependency cycle");
    // Every remaining node has a remaining predecessor; walk backwards
    // would work too, but forwards along remaining successors does: each
    // remaining node lies on or before a cycle among remaining nodes.
    let mut path: Vec<(usize, Edge)> = Vec::new();
    let mut position: HashMap<usize, usize> = HashMap::new();
    let mut v = start;
    loop {
        if let Some(&i) = position.get(&v) {
            return Some(path.split_off(i));
        }
        position.insert(v, path.len());
        let &(w, kind) = out[v].iter().find(|(w, _)| !removed[*w])?;
        path.push((v, kind));
        v = w;
    }
}

fn total() -> usize {
    std::env::var("PYDB_HISTORY_TXNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000)
}

fn history(kind: Kind, options: TxnOptions) -> Findings {
    history_of(kind, options, total())
}

fn history_of(kind: Kind, options: TxnOptions, total: usize) -> Findings {
    // Collect garbage as it runs: every append rewrites a whole list.
    let db = Db::with_options(
        kind,
        pydb_txn::Options {
            gc_interval: Some(Duration::from_millis(50)),
            ..common::options()
        },
    );
    let (records, finals) = run(&db.mgr, &options, total);
    assert!(records.len() >= total, "every thread commits its share");
    eprintln!("{kind:?} {:?}: {:?}", options.isolation, db.mgr.stats());
    check(&records, &finals)
}

fn assert_serializable(findings: &Findings) {
    assert!(findings.violations.is_empty(), "{:?}", findings.violations);
    assert!(
        findings.cycle.is_none(),
        "a dependency cycle: {:?}",
        findings.cycle
    );
}

#[test]
fn serializable_histories_have_no_cycles() {
    assert_serializable(&history(
        Kind::Memory,
        TxnOptions::new(Isolation::Serializable),
    ));
    // A persistent engine too, with fewer transactions (every commit syncs).
    let options = TxnOptions::new(Isolation::Serializable);
    assert_serializable(&history_of(Kind::BTree, options, total() / 4));
}

#[test]
fn locking_histories_have_no_cycles() {
    let options = TxnOptions::new(Isolation::ReadCommitted)
        .concurrency(Concurrency::Locking)
        .lock_wait(LockWait::Timeout(Duration::from_secs(5)));
    assert_serializable(&history(Kind::Memory, options));
}

/// The negative control: snapshot isolation lets write skew through, and
/// the checker must see it as a cycle with an rw edge (G2-item).
///
/// Whether a write skew happens depends on how the threads interleave, and
/// on a loaded machine they can run nearly one at a time (a single history
/// once showed no cycle that way). So up to `SKEW_ATTEMPTS` histories run: one of them
/// must show the cycle, and none may show a violation. A checker that
/// never finds a cycle still fails every attempt.
#[test]
fn snapshot_histories_show_write_skew() {
    const SKEW_ATTEMPTS: usize = 4;
    for attempt in 1..=SKEW_ATTEMPTS {
        let findings = history(Kind::Memory, TxnOptions::new(Isolation::Snapshot));
        assert!(findings.violations.is_empty(), "{:?}", findings.violations);
        if let Some(cycle) = findings.cycle {
            assert!(cycle.iter().any(|(_, e)| *e == Edge::Rw), "{cycle:?}");
            return;
        }
        eprintln!("attempt {attempt}: no cycle in this history");
    }
    panic!("snapshot isolation must show a G2-item cycle in {SKEW_ATTEMPTS} histories");
}

/// Read committed loses nothing (appends are read-modify-writes, so it
/// does lose updates: the checker must report them).
#[test]
fn read_committed_histories_lose_appends() {
    let findings = history(Kind::Memory, TxnOptions::new(Isolation::ReadCommitted));
    assert!(
        findings
            .violations
            .iter()
            .any(|v| v.contains("appears 0 times"))
            || findings.cycle.is_some(),
        "read committed must show a lost update or a cycle"
    );
}

#[test]
fn the_checker_finds_handmade_write_skew_and_accepts_a_serial_history() {
    // T0 and T1 both read list0 = [] and list1 = []; T0 appends 1 to list0,
    // T1 appends 2 to list1: T0 -rw-> T1 -rw-> T0.
    let skew = vec![
        Record {
            reads: vec![Read::of(0, &[]), Read::of(1, &[])],
            appends: vec![(0, 1)],
        },
        Record {
            reads: vec![Read::of(0, &[]), Read::of(1, &[])],
            appends: vec![(1, 2)],
        },
    ];
    let mut finals = vec![Vec::new(); KEYS];
    finals[0] = vec![1];
    finals[1] = vec![2];
    let cycle = check(&skew, &finals).cycle.unwrap();
    assert_eq!(cycle.len(), 2);
    assert!(cycle.iter().all(|(_, e)| *e == Edge::Rw));
    // Serial: T1 saw T0's append.
    let serial = vec![
        skew[0].clone(),
        Record {
            reads: vec![Read::of(0, &[1]), Read::of(1, &[])],
            appends: vec![(1, 2)],
        },
    ];
    assert_serializable(&check(&serial, &finals));
    // A read that is not a prefix of the final list is reported.
    let bad = vec![Record {
        reads: vec![Read::of(0, &[7])],
        appends: vec![],
    }];
    assert!(!check(&bad, &finals).violations.is_empty());
}
