//! Garbage collection of versions no snapshot can see.
//!
//! Every commit adds versions; nothing in the commit path removes old ones,
//! because a running transaction may still read them. Take the watermark
//! `W`: the oldest snapshot of a running transaction (or the last commit
//! when none runs), lowered by [`Options::history`](crate::Options) commits
//! kept for "as of" reads. Every snapshot that can exist now or later is at
//! or above `W`. For each key, walk its versions newest first:
//!
//! ```text
//!   ts:  12     9      7      4      2
//!        keep   keep   [the newest at or below W = 8]   older: garbage
//!                      keep if a value, garbage if a tombstone
//! ```
//!
//! - versions above `W` are kept: some snapshot may be too old to see the
//!   newer ones but young enough to see these;
//! - the newest version at or below `W` is what a snapshot at `W` sees:
//!   kept if it is a value, removed if it is a tombstone (then the key is
//!   absent either way, because everything older goes too);
//! - everything older is hidden from every snapshot: garbage.
//!
//! An *expired* value counts as a tombstone here, once it is expired for
//! every transaction that can still read it: its deadline must be before
//! the clock reading of the oldest running transaction (each judges expiry
//! at its begin, see `clock`) and before now. A transaction that began
//! before the deadline may still see the value, so it is kept until that
//! transaction ends.
//!
//! ## Which keys a pass walks
//!
//! Walking every version each time costs a read of the whole database per
//! collection, however little changed. After the first pass (which also
//! sees what was written before this open), garbage can only appear where
//! a commit wrote: each commit *marks* its keys, and a *marked pass* walks
//! only their versions. A key whose walk leaves something for later (a
//! version above `W`, or a value with an expiry deadline) is marked again
//! for the next pass, so a snapshot that held a version back, or a
//! deadline that passes with no new write, is still collected. A commit
//! does not mark a key it *created*: one its transaction read and found
//! no version of (no value, no tombstone), written with a value that never
//! expires. The write-write check at commit refuses the transaction if
//! any version of the key appeared after its snapshot, so its version is
//! the key's only one, which is not garbage now and can only become
//! garbage when a later commit writes the key (and marks it). An
//! insert-only load (SQL's INSERT reads each new primary key first) then
//! leaves a marked pass nothing to walk, where it opened a scan per row.
//!
//! Nor does a commit mark the *dependents* of a key it created
//! ([`Transaction::set_dependent_owned_in`](crate::Transaction::set_dependent_owned_in)):
//! a key `d` that by its writer's invariant has a value at a commit only if
//! its owner `o` has one (SQL's index entry and its row), written by the
//! transaction that created `o`. Such a write is `d`'s first version as
//! far as collection goes, without reading `d`, because a key no pass will
//! walk (neither marked nor left for the next pass) has at most one
//! version, a lasting value: any other shape is unsettled and walked
//! again. Say `d` had such a lone value `v`, at or below the snapshot
//! (above it, the write-write check refuses the commit). Then `o` had a
//! value when `v` was written, and has no version at or below the snapshot
//! now, so some commit after `v` deleted `o`, and deleted `d` with it: `d`
//! has a tombstone newer than `v`, which is removed only together with
//! `v`. So `v` is not alone; contradiction. Any older versions `d` does
//! have are in the marks already, and their walk, which sees or misses the
//! new version, removes them either way. An INSERT's secondary index
//! entries (written blind, with no read) are the dependents of its row.
//! The background collector makes a full pass every `FULL_PASS_EVERY`
//! rounds as a safety net; [`TxnManager::gc`](crate::TxnManager::gc) always makes
//! a full one.
//!
//! Removal is a plain engine `write_batch` of deletes, in chunks, beside
//! commits: it never changes what a snapshot at or above `W` reads, so it
//! needs no commit timestamp. Before deleting, the new horizon (`W`) is
//! written to the metadata key `gc_horizon` and checked by "as of" begins.
//! Each batch of deletes first bumps the manager's garbage epoch, which is
//! how a read that registers no snapshot learns that it may have raced a
//! collection (see "How a read avoids the snapshot registry" in `manager`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use pydb_storage::WriteBatch;

use crate::error::Result;
use crate::keys;
use crate::manager::{Inner, WeakInner};

/// Deletes per engine batch.
const DELETE_CHUNK: usize = 1024;

/// What one collection did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    /// The watermark it collected below.
    pub watermark: u64,
    /// Versions it looked at: every version in the engine in a full pass,
    /// the versions of the marked keys in a marked one.
    pub versions: u64,
    /// Versions it removed.
    pub garbage: u64,
}

/// How often the background collector walks every version instead of
/// only the keys written since its last pass: a safety net, since every
/// version after the first pass is written by a commit, which marks its key.
pub const FULL_PASS_EVERY: u64 = 64;

/// Which versions a collection walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// Every version in the engine.
    Full,
    /// Only the versions of the keys commits marked since the last pass
    /// (and of the keys that pass left unsettled).
    Marked,
}

/// One collection, serialized with other collections.
pub(crate) fn collect(inner: &Inner, pass: Pass) -> Result<GcReport> {
    let mut rounds = inner.gc_lock.lock();
    inner.check_poisoned()?;
    let (watermark, expired_before) = {
        let mut active = inner.active.lock();
        let now = inner.options.clock.now_ms();
        let expired_before = active.clocks_oldest().map_or(now, |oldest| oldest.min(now));
        let oldest = active
            .snapshots_oldest()
            .unwrap_or_else(|| inner.published());
        let watermark = oldest.saturating_sub(inner.options.history);
        // The horizon only moves forward; as-of begins check it under the
        // same lock, so none can start below it from now on.
        active.horizon = active.horizon.max(watermark);
        (active.horizon, expired_before)
    };
    inner
        .engine
        .set(keys::META_GC_HORIZON, &keys::encode_u64(watermark))?;
    let mut walk = Walk {
        inner,
        watermark,
        expired_before,
        garbage: WriteBatch::new(),
        report: GcReport {
            watermark,
            ..GcReport::default()
        },
        current: None,
        settled: false,
        unsettled: false,
        revisit: Vec::new(),
    };
    // Take the marks before walking: a key a commit marks from now on is
    // walked by the next pass.
    let marked = std::mem::take(&mut *inner.gc_marked.lock());
    if pass == Pass::Full || *rounds == 0 {
        // The first pass also sees the versions written before this open.
        for item in inner.engine.scan(keys::all_versions())? {
            let (engine_key, value) = item?;
            walk.version(engine_key, &value)?;
        }
        walk.end_key();
    } else {
        let mut marked = marked;
        marked.sort_unstable();
        marked.dedup();
        for key in marked {
            for item in inner.engine.scan(keys::visible_range(&key, u64::MAX))? {
                let (engine_key, value) = item?;
                walk.version(engine_key, &value)?;
            }
            walk.end_key();
        }
    }
    *rounds += 1;
    let Walk {
        mut garbage,
        mut report,
        revisit,
        ..
    } = walk;
    report.garbage += flush(inner, &mut garbage)?;
    inner.gc_marked.lock().extend(revisit);
    let c = &inner.counters;
    c.collections.fetch_add(1, Ordering::Relaxed);
    c.garbage_collected
        .fetch_add(report.garbage, Ordering::Relaxed);
    c.versions_at_last_collection
        .store(report.versions, Ordering::Relaxed);
    tracing::debug!(?report, ?pass, "garbage collected");
    Ok(report)
}

/// The walk over versions in engine order (per key, newest first), with
/// what it has decided so far.
struct Walk<'a> {
    inner: &'a Inner,
    watermark: u64,
    expired_before: u64,
    garbage: WriteBatch,
    report: GcReport,
    /// The key whose versions are being walked.
    current: Option<Bytes>,
    /// Whether the current key's newest version at or below the watermark
    /// has been seen (everything after it is garbage).
    settled: bool,
    /// Whether the current key may turn into garbage later with no new
    /// write: it has versions above the watermark, or its settled value
    /// has an expiry deadline.
    unsettled: bool,
    /// The keys the next marked pass must walk again.
    revisit: Vec<Bytes>,
}

impl Walk<'_> {
    /// Looks at one version.
    fn version(&mut self, engine_key: Bytes, value: &Bytes) -> Result<()> {
        let (key, ts) = keys::decode_spaced(&engine_key)?;
        self.report.versions += 1;
        if self.current.as_ref() != Some(&key) {
            self.end_key();
            // Flush only between keys: a tombstone and the older versions
            // it hides go in one atomic batch, or a reader could see an
            // older value resurface in between.
            if self.garbage.len() >= DELETE_CHUNK {
                self.report.garbage += flush(self.inner, &mut self.garbage)?;
            }
            self.current = Some(key);
        }
        if ts > self.watermark {
            self.unsettled = true;
            return Ok(());
        }
        if self.settled {
            self.garbage.delete(engine_key);
            return Ok(());
        }
        self.settled = true;
        match keys::decode_stored(&engine_key, value)? {
            None => {
                self.garbage.delete(engine_key);
            }
            Some(stored) if stored.is_expired(self.expired_before) => {
                self.garbage.delete(engine_key);
            }
            Some(stored) => self.unsettled |= stored.deadline.is_some(),
        }
        Ok(())
    }

    /// Closes the current key: remembers it for the next pass if it is
    /// not settled for good.
    fn end_key(&mut self) {
        if let Some(key) = self.current.take()
            && self.unsettled
        {
            self.revisit.push(key);
        }
        self.settled = false;
        self.unsettled = false;
    }
}

fn flush(inner: &Inner, garbage: &mut WriteBatch) -> Result<u64> {
    if garbage.is_empty() {
        return Ok(0);
    }
    inner.delete_garbage(garbage)?;
    let n = garbage.len() as u64;
    *garbage = WriteBatch::new();
    Ok(n)
}

/// Starts the background collector: it runs every `every` until the
/// sender is dropped or the manager is gone.
pub(crate) fn start(
    inner: WeakInner,
    every: Duration,
) -> Result<(mpsc::Sender<()>, JoinHandle<()>)> {
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("pydb-txn-gc".into())
        .spawn(move || {
            let mut round = 0u64;
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                let Some(inner): Option<Arc<Inner>> = inner.upgrade() else {
                    return;
                };
                let pass = if round.is_multiple_of(FULL_PASS_EVERY) {
                    Pass::Full
                } else {
                    Pass::Marked
                };
                round += 1;
                if let Err(err) = collect(&inner, pass) {
                    tracing::warn!(%err, "background garbage collection failed");
                }
            }
        })
        .map_err(|e| pydb_storage::Error::InvalidDatabase {
            path: "pydb-txn".into(),
            reason: format!("cannot start the garbage collector thread: {e}"),
        })?;
    Ok((stop, thread))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use pydb_storage::MemoryStorage;

    use super::{Pass, collect};
    use crate::clock::{ClockHandle, ManualClock};
    use crate::{Isolation, Keyspace, Options, TxnManager};

    /// A manager whose background collector never gets to run during the
    /// test (so that marks accumulate), collected by hand.
    fn manager() -> TxnManager {
        let options = Options {
            gc_interval: Some(Duration::from_secs(3600)),
            ..Options::default()
        };
        TxnManager::open(Arc::new(MemoryStorage::new()), options).unwrap()
    }

    fn set(db: &TxnManager, key: &[u8], value: &[u8]) {
        db.transaction(Isolation::Snapshot, |tx| tx.set(key, value))
            .unwrap();
    }

    #[test]
    fn a_marked_pass_walks_only_the_keys_written_since_the_last_pass() {
        let db = manager();
        for i in 0..100u32 {
            set(&db, format!("cold{i:03}").as_bytes(), b"v");
        }
        // The first pass is full, whatever it is asked for.
        let first = collect(&db.inner, Pass::Marked).unwrap();
        assert_eq!((first.versions, first.garbage), (100, 0));
        for v in [&b"1"[..], b"2", b"3"] {
            set(&db, b"hot", v);
        }
        set(&db, b"warm", b"w");
        let report = collect(&db.inner, Pass::Marked).unwrap();
        // hot's three versions and warm's one; none of the 100 cold keys.
        assert_eq!((report.versions, report.garbage), (4, 2));
        let again = collect(&db.inner, Pass::Marked).unwrap();
        assert_eq!((again.versions, again.garbage), (0, 0), "all settled");
        let tx = db.begin(Isolation::Snapshot).unwrap();
        assert_eq!(tx.get(b"hot").unwrap().unwrap(), &b"3"[..]);
        assert_eq!(tx.get(b"cold042").unwrap().unwrap(), &b"v"[..]);
    }

    #[test]
    fn a_key_held_by_a_snapshot_is_walked_again_until_it_settles() {
        let db = manager();
        set(&db, b"k", b"old");
        collect(&db.inner, Pass::Full).unwrap();
        // A reader pins the snapshot that sees "old" ...
        let reader = db.begin(Isolation::Snapshot).unwrap();
        set(&db, b"k", b"new");
        let held = collect(&db.inner, Pass::Marked).unwrap();
        assert_eq!((held.versions, held.garbage), (2, 0), "old is still seen");
        assert_eq!(reader.get(b"k").unwrap().unwrap(), &b"old"[..]);
        drop(reader);
        // ... and once it is gone, a pass with no new write collects it:
        // the key was remembered, not forgotten with the marks.
        let freed = collect(&db.inner, Pass::Marked).unwrap();
        assert_eq!((freed.versions, freed.garbage), (2, 1));
        let tx = db.begin(Isolation::Snapshot).unwrap();
        assert_eq!(tx.get(b"k").unwrap().unwrap(), &b"new"[..]);
    }

    #[test]
    fn a_deleted_key_leaves_nothing_behind() {
        let db = manager();
        collect(&db.inner, Pass::Full).unwrap();
        set(&db, b"k", b"v");
        db.transaction(Isolation::Snapshot, |tx| tx.delete(b"k").map(drop))
            .unwrap();
        let report = collect(&db.inner, Pass::Marked).unwrap();
        assert_eq!((report.versions, report.garbage), (2, 2));
        let full = collect(&db.inner, Pass::Full).unwrap();
        assert_eq!((full.versions, full.garbage), (0, 0));
    }

    #[test]
    fn an_expiring_value_is_walked_again_until_it_expires() {
        let clock = ManualClock::new(1_000);
        let options = Options {
            gc_interval: Some(Duration::from_secs(3600)),
            clock: ClockHandle::new(clock.clone()),
            ..Options::default()
        };
        let db = TxnManager::open(Arc::new(MemoryStorage::new()), options).unwrap();
        collect(&db.inner, Pass::Full).unwrap();
        db.transaction(Isolation::Snapshot, |tx| {
            tx.set_with_deadline(b"session", b"s", Some(2_000))
        })
        .unwrap();
        let live = collect(&db.inner, Pass::Marked).unwrap();
        assert_eq!((live.versions, live.garbage), (1, 0), "not expired yet");
        clock.set(2_001);
        // No write since: only the memory of an unsettled key finds it.
        let expired = collect(&db.inner, Pass::Marked).unwrap();
        assert_eq!((expired.versions, expired.garbage), (1, 1));
    }

    #[test]
    fn a_key_a_commit_created_is_not_walked_until_it_is_written_again() {
        let db = manager();
        collect(&db.inner, Pass::Full).unwrap();
        // Read and found absent, then written: the only version.
        let create = |db: &TxnManager, isolation: Isolation, key: &[u8]| {
            db.transaction(isolation, |tx| {
                assert_eq!(tx.get(key)?, None);
                tx.set(key, b"v")
            })
            .unwrap();
        };
        create(&db, Isolation::Snapshot, b"a");
        create(&db, Isolation::Serializable, b"b");
        let report = collect(&db.inner, Pass::Marked).unwrap();
        assert_eq!((report.versions, report.garbage), (0, 0));
        // A blind write, a read committed one (no write-write check), a
        // delete and an expiring value are walked.
        set(&db, b"blind", b"v");
        create(&db, Isolation::ReadCommitted, b"rc");
        db.transaction(Isolation::Snapshot, |tx| {
            assert_eq!(tx.get(b"gone")?, None);
            tx.delete(b"gone").map(drop)
        })
        .unwrap();
        db.transaction(Isolation::Snapshot, |tx| {
            assert_eq!(tx.get(b"brief")?, None);
            tx.set_with_deadline(b"brief", b"v", Some(u64::MAX - 1))
        })
        .unwrap();
        let report = collect(&db.inner, Pass::Marked).unwrap();
        assert_eq!((report.versions, report.garbage), (4, 1), "the tombstone");
        // Written again, the created key is walked and its old version
        // collected.
        set(&db, b"a", b"w");
        let report = collect(&db.inner, Pass::Marked).unwrap();
        assert_eq!((report.versions, report.garbage), (3, 1), "a's two, brief");
        let tx = db.begin(Isolation::Snapshot).unwrap();
        assert_eq!(tx.get(b"a").unwrap().unwrap(), &b"w"[..]);
        assert_eq!(tx.get(b"b").unwrap().unwrap(), &b"v"[..]);
    }

    #[test]
    fn created_keys_read_out_of_order_and_twice_are_still_recognised() {
        let db = manager();
        collect(&db.inner, Pass::Full).unwrap();
        // The transaction notes created keys in read order (descending
        // here, and "c" twice); the commit must still match each one
        // against the sorted write buffer, around a blind write ("b").
        db.transaction(Isolation::Snapshot, |tx| {
            for key in [&b"c"[..], b"a", b"c", b"e"] {
                assert_eq!(tx.get(key)?, None);
            }
            for key in [&b"a"[..], b"b", b"c", b"e"] {
                tx.set(key, b"v")?;
            }
            Ok(())
        })
        .unwrap();
        let report = collect(&db.inner, Pass::Marked).unwrap();
        assert_eq!((report.versions, report.garbage), (1, 0), "only b walked");
    }

    #[test]
    fn a_created_key_that_loses_the_write_conflict_leaves_no_unwalked_garbage() {
        let db = manager();
        collect(&db.inner, Pass::Full).unwrap();
        let mut late = db.begin(Isolation::Snapshot).unwrap();
        assert_eq!(late.get(b"k").unwrap(), None);
        set(&db, b"k", b"first");
        late.set(b"k", b"second").unwrap();
        assert!(late.commit().is_err(), "write-write conflict");
        let full = collect(&db.inner, Pass::Full).unwrap();
        assert_eq!((full.versions, full.garbage), (1, 0));
    }

    /// Writes row `row` (created if absent) with its entry `entry` as a
    /// dependent, as SQL's INSERT does.
    fn insert_row(tx: &mut crate::Transaction, row: &[u8], entry: &[u8]) -> crate::Result<()> {
        let sql = Keyspace::Sql;
        assert_eq!(tx.insert_owned_in(sql, row, Bytes::from("r"))?, None);
        tx.set_dependent_owned_in(sql, entry, Bytes::copy_from_slice(row), row)
    }

    #[test]
    fn a_dependent_is_walked_unless_its_owner_was_created_by_the_insert() {
        let sql = Keyspace::Sql;
        let db = manager();
        collect(&db.inner, Pass::Full).unwrap();
        db.transaction(Isolation::Snapshot, |tx| insert_row(tx, b"r1", b"e1"))
            .unwrap();
        let report = collect(&db.inner, Pass::Marked).unwrap();
        assert_eq!((report.versions, report.garbage), (0, 0), "row and entry");
        // Deleted and inserted again in one transaction: the row is only
        // absent from the write buffer, the entry's old version is hidden
        // by the new one, and must be walked.
        db.transaction(Isolation::Snapshot, |tx| {
            tx.delete_in(sql, b"r1")?;
            tx.delete_in(sql, b"e1")?;
            insert_row(tx, b"r1", b"e1")
        })
        .unwrap();
        let report = collect(&db.inner, Pass::Marked).unwrap();
        assert_eq!((report.versions, report.garbage), (4, 2), "r1 and e1");
        // An owner other than the last insert's key, and the same owner
        // in another space, do not count.
        db.transaction(Isolation::Snapshot, |tx| {
            insert_row(tx, b"r2", b"e2")?;
            tx.set_dependent_owned_in(sql, b"e3", Bytes::from("x"), b"r1")?;
            tx.set_dependent_owned_in(Keyspace::Kv, b"e4", Bytes::from("x"), b"r2")
        })
        .unwrap();
        let report = collect(&db.inner, Pass::Marked).unwrap();
        assert_eq!((report.versions, report.garbage), (2, 0), "e3 and e4");
        // Under read committed nothing is created (no write-write check).
        db.transaction(Isolation::ReadCommitted, |tx| insert_row(tx, b"r5", b"e5"))
            .unwrap();
        let report = collect(&db.inner, Pass::Marked).unwrap();
        assert_eq!((report.versions, report.garbage), (2, 0), "r5 and e5");
    }

    /// SQL's INSERT builds its keys in place and names a dependent's
    /// owner in pieces: the pieces are the owner when they join to it,
    /// not when they make a prefix of it or run past it.
    #[test]
    fn a_dependent_whose_owner_is_named_in_pieces_is_not_walked() {
        use crate::SpacedKey;
        let sql = Keyspace::Sql;
        let db = manager();
        collect(&db.inner, Pass::Full).unwrap();
        let built = |key: &[u8]| {
            let mut spaced = SpacedKey::new(sql, 1);
            spaced.append_with(|k| k.extend_from_slice(key));
            spaced
        };
        db.transaction(Isolation::Snapshot, |tx| {
            assert_eq!(tx.insert_spaced(&built(b"r12"), Bytes::from("r"))?, None);
            tx.set_dependent_spaced(&built(b"e1"), Bytes::from("x"), &[b"r1", b"2"])?;
            tx.set_dependent_spaced(&built(b"e2"), Bytes::from("x"), &[b"r", b"1"])?;
            tx.set_dependent_spaced(&built(b"e3"), Bytes::from("x"), &[b"r12", b"3"])
        })
        .unwrap();
        let report = collect(&db.inner, Pass::Marked).unwrap();
        assert_eq!((report.versions, report.garbage), (2, 0), "e2 and e3");
        // An empty key built in place is refused, as a slice's is.
        let mut tx = db.begin(Isolation::Snapshot).unwrap();
        assert!(tx.insert_spaced(&built(b""), Bytes::from("r")).is_err());
        assert!(
            tx.set_dependent_spaced(&built(b""), Bytes::from("x"), &[b"r12"])
                .is_err()
        );
    }

    #[test]
    fn an_inserted_key_written_again_in_its_transaction_stays_created() {
        let sql = Keyspace::Sql;
        let db = manager();
        collect(&db.inner, Pass::Full).unwrap();
        // Inserted, then set again and its entry rewritten: the commit
        // writes one version of each, still their first.
        db.transaction(Isolation::Snapshot, |tx| {
            insert_row(tx, b"r1", b"e1")?;
            tx.set_owned_in(sql, b"r1", Bytes::from("r again"))?;
            tx.set_owned_in(sql, b"e1", Bytes::from("e again"))
        })
        .unwrap();
        let report = collect(&db.inner, Pass::Marked).unwrap();
        assert_eq!((report.versions, report.garbage), (0, 0));
        // Inserted, then deleted: a tombstone, walked and collected.
        db.transaction(Isolation::Snapshot, |tx| {
            insert_row(tx, b"r2", b"e2")?;
            tx.delete_in(sql, b"r2")?;
            tx.delete_in(sql, b"e2")
        })
        .unwrap();
        let report = collect(&db.inner, Pass::Marked).unwrap();
        assert_eq!((report.versions, report.garbage), (2, 2), "two tombstones");
        let tx = db.begin(Isolation::Snapshot).unwrap();
        assert_eq!(tx.get_in(sql, b"r1").unwrap().unwrap(), &b"r again"[..]);
        assert_eq!(tx.get_in(sql, b"r2").unwrap(), None);
    }

    /// Rows and their entries in a small key space, inserted, moved (the
    /// entry rewritten under a new value) and deleted in random order,
    /// with readers holding old snapshots and marked passes in between:
    /// every 20 operations, once the readers are gone, marked passes must
    /// leave no garbage for a full pass to find. Fails if a dependent is
    /// left unmarked when it hides an older version.
    #[test]
    fn marked_passes_collect_everything_with_dependents() {
        let sql = Keyspace::Sql;
        let db = manager();
        collect(&db.inner, Pass::Full).unwrap();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        // The entry of row `r` with value `v` is `e{v}{r}`: its key ends
        // with the row's, as a SQL entry's does.
        let entry = |r: u64, v: u64| format!("e{v}r{r}").into_bytes();
        let mut rows: std::collections::BTreeMap<u64, u64> = Default::default();
        let mut readers = Vec::new();
        for op in 1..=400 {
            let r = next(6);
            let v = next(3);
            let row = format!("r{r}").into_bytes();
            let old = rows.get(&r).copied();
            // An existing row is deleted, and half the time inserted
            // again in the same transaction.
            let insert = old.is_none() || next(2) == 0;
            db.transaction(Isolation::Snapshot, |tx| {
                if let Some(old) = old {
                    tx.delete_in(sql, &row)?;
                    tx.delete_in(sql, &entry(r, old))?;
                }
                if insert {
                    insert_row(tx, &row, &entry(r, v))?;
                }
                Ok(())
            })
            .unwrap();
            if insert {
                rows.insert(r, v);
            } else {
                rows.remove(&r);
            }
            match next(8) {
                0 => readers.push(db.begin(Isolation::Snapshot).unwrap()),
                1 => drop(readers.pop()),
                2 | 3 => {
                    collect(&db.inner, Pass::Marked).unwrap();
                }
                _ => {}
            }
            if op % 20 == 0 {
                // Settle, then look for garbage the marked passes missed
                // (a full pass, which walks everything, starts over).
                readers.clear();
                for _ in 0..2 {
                    collect(&db.inner, Pass::Marked).unwrap();
                }
                let full = collect(&db.inner, Pass::Full).unwrap();
                assert_eq!(full.garbage, 0, "missed by the marked passes, op {op}");
                assert_eq!(full.versions, 2 * rows.len() as u64, "one version each");
            }
        }
        let tx = db.begin(Isolation::Snapshot).unwrap();
        for r in 0..6 {
            let row = format!("r{r}").into_bytes();
            assert_eq!(
                tx.get_in(sql, &row).unwrap().is_some(),
                rows.contains_key(&r)
            );
            for v in 0..3 {
                let expected = rows.get(&r) == Some(&v);
                assert_eq!(tx.get_in(sql, &entry(r, v)).unwrap().is_some(), expected);
            }
        }
    }

    #[test]
    fn without_a_background_collector_commits_mark_nothing() {
        let options = Options {
            gc_interval: None,
            ..Options::default()
        };
        let db = TxnManager::open(Arc::new(MemoryStorage::new()), options).unwrap();
        set(&db, b"k", b"v");
        assert!(db.inner.gc_marked.lock().is_empty());
    }
}
