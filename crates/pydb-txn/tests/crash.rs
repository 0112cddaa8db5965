//! Guards durability across a power cut: threads commit transactions that
//! each write one value to three keys of a group, the power is cut at a
//! random moment (FaultyOpener), and after reopening with plain files every
//! group holds one transaction's value on all three keys (all or nothing),
//! every acknowledged commit is there (or was overwritten by a later
//! commit of the same group), and timestamps continue past the recovered
//! last commit.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use pydb_file::{FaultyOpener, FileOpener, MonolithicOpener};
use pydb_index::BTreeIndex;
use pydb_storage::{AppendOnlyLogStorage, BTreeStorage, StorageEngine};
use pydb_txn::{Isolation, TxnManager};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const GROUPS: u64 = 6;
const THREADS: u64 = 4;
const FIELDS: [&str; 3] = ["a", "b", "c"];

fn open_log<O: FileOpener + 'static>(dir: &Path, opener: O) -> Arc<dyn StorageEngine> {
    Arc::new(
        AppendOnlyLogStorage::open_with(dir, opener, BTreeIndex::new(), common::log_options())
            .unwrap(),
    )
}

fn open_btree<O: FileOpener + 'static>(dir: &Path, opener: O) -> Arc<dyn StorageEngine>
where
    O::File: 'static,
{
    let mut options = common::btree_options();
    options.page_size = 512;
    options.pool_bytes = 16 * 512;
    options.checkpoint_bytes = 8 << 10;
    Arc::new(BTreeStorage::open_with(dir, options, opener).unwrap())
}

/// What the writers did: acknowledged (group -> (ts, id)), and every id
/// whose commit was attempted.
#[derive(Default)]
struct Ledger {
    acked: HashMap<u64, (u64, u64)>,
    attempted: HashSet<u64>,
    max_acked_ts: u64,
}

fn one_seed(
    seed: u64,
    faulty: fn(&Path, FaultyOpener<MonolithicOpener>) -> Arc<dyn StorageEngine>,
    plain: fn(&Path, MonolithicOpener) -> Arc<dyn StorageEngine>,
) {
    let dir = common::scratch();
    let opener = FaultyOpener::new(MonolithicOpener, seed);
    let controller = opener.controller().clone();
    let mgr = TxnManager::open(faulty(dir.path(), opener), common::options()).unwrap();
    let ledger = Mutex::new(Ledger::default());
    let next_id = AtomicU64::new(1);
    let cut_after = StdRng::seed_from_u64(seed).random_range(5..120u64);
    let commits = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (mgr, ledger, next_id, commits, controller) =
                (&mgr, &ledger, &next_id, &commits, &controller);
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(seed * 100 + t);
                loop {
                    let group = rng.random_range(0..GROUPS);
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let attempt = (|| {
                        let mut tx = mgr.begin(Isolation::Serializable)?;
                        for f in FIELDS {
                            tx.get(format!("g{group}/{f}").as_bytes())?;
                            tx.set(format!("g{group}/{f}").as_bytes(), &id.to_le_bytes())?;
                        }
                        ledger.lock().attempted.insert(id);
                        tx.commit()
                    })();
                    match attempt {
                        Ok(ts) => {
                            let mut l = ledger.lock();
                            let entry = l.acked.entry(group).or_insert((0, 0));
                            if ts > entry.0 {
                                *entry = (ts, id);
                            }
                            l.max_acked_ts = l.max_acked_ts.max(ts);
                            drop(l);
                            if commits.fetch_add(1, Ordering::Relaxed) + 1 == cut_after {
                                controller.power_cut().unwrap();
                            }
                        }
                        Err(err) if err.is_retryable() => {}
                        Err(_) => return, // the power is out
                    }
                }
            });
        }
    });
    drop(mgr);

    let ledger = ledger.into_inner();
    let mgr = TxnManager::open(plain(dir.path(), MonolithicOpener), common::options()).unwrap();
    let context = format!("seed {seed}, cut after {cut_after} commits");
    assert!(
        mgr.last_commit() >= ledger.max_acked_ts,
        "{context}: a commit timestamp went back"
    );
    let tx = mgr.begin(Isolation::Snapshot).unwrap();
    for group in 0..GROUPS {
        let values: Vec<Option<u64>> = FIELDS
            .iter()
            .map(|f| {
                tx.get(format!("g{group}/{f}").as_bytes())
                    .unwrap()
                    .map(|v| u64::from_le_bytes(v[..].try_into().unwrap()))
            })
            .collect();
        assert!(
            values.windows(2).all(|w| w[0] == w[1]),
            "{context}: group {group} mixes transactions: {values:?}"
        );
        let found = values[0];
        match ledger.acked.get(&group) {
            Some(&(acked_ts, acked)) => {
                let found =
                    found.unwrap_or_else(|| panic!("{context}: group {group} lost commit {acked}"));
                let unacknowledged = |id: u64| {
                    ledger.attempted.contains(&id) && !ledger.acked.values().any(|(_, a)| *a == id)
                };
                assert!(
                    found == acked || unacknowledged(found),
                    "{context}: group {group} holds {found}, the last acknowledged was {acked}"
                );
                // The acknowledged commit is in the history at its timestamp.
                let then = mgr.begin_as_of(acked_ts).unwrap();
                for f in FIELDS {
                    let v = then
                        .get(format!("g{group}/{f}").as_bytes())
                        .unwrap()
                        .unwrap();
                    assert_eq!(v[..], acked.to_le_bytes(), "{context}: as of {acked_ts}");
                }
            }
            None => assert!(
                found.is_none_or(|id| ledger.attempted.contains(&id)),
                "{context}: group {group} holds {found:?}, never written"
            ),
        }
    }
    drop(tx);
    let before = mgr.last_commit();
    let ts = mgr
        .transaction(Isolation::Snapshot, |tx| tx.set(b"after", b"reopen"))
        .map(|()| mgr.last_commit())
        .unwrap();
    assert_eq!(ts, before + 1, "{context}");
}

fn seeds() -> std::ops::Range<u64> {
    match std::env::var("PYDB_TXN_CRASH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(n) => 0..n,
        None => 0..25,
    }
}

#[test]
fn log_engine_commits_survive_a_power_cut_all_or_nothing() {
    for seed in seeds() {
        one_seed(
            seed,
            open_log::<FaultyOpener<MonolithicOpener>>,
            open_log::<MonolithicOpener>,
        );
    }
}

#[test]
fn btree_engine_commits_survive_a_power_cut_all_or_nothing() {
    for seed in seeds() {
        one_seed(
            seed,
            open_btree::<FaultyOpener<MonolithicOpener>>,
            open_btree::<MonolithicOpener>,
        );
    }
}
