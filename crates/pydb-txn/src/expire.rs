//! Active expiry: deleting expired keys in the background, a slice at a
//! time.
//!
//! Lazy expiry (every read hides a value past its deadline) is enough for
//! correctness, but an expired key nobody reads would keep its bytes
//! forever. Redis therefore also samples keys that have a deadline, ten
//! times a second, deletes the expired ones, and goes on at once while
//! more than a quarter of its sample was expired.
//!
//! pydb keeps no separate table of keys with deadlines: the deadline lives
//! in the version value, in the engine. So instead of sampling at random,
//! the expirer walks the version keys like a clock hand: each cycle scans
//! at most [`Options::expire_sample`](crate::Options) versions from where
//! the last one stopped (wrapping at the end), and deletes, in **one**
//! snapshot transaction, every key whose visible value has expired.
//!
//! ```text
//!  cycle 1: [a b c d]         cycle 2: [e f g h]     cycle 3: [i j]  (wraps)
//!            ^ cursor                   ^ cursor               ^ cursor
//! ```
//!
//! Invariants:
//! - **Bounded work.** A cycle stops at the first key boundary after
//!   `expire_sample` versions (so it reads that many, plus the other
//!   versions of the key it was on, which garbage collection keeps few)
//!   and writes at most one tombstone per key it read; a tick repeats a
//!   cycle only while more than a quarter of the keys it saw were expired,
//!   and at most [`MAX_REPEATS`] times.
//! - **Never deletes a live value.** The delete is a transaction that reads
//!   the key again at its own snapshot and clock, and deletes only what it
//!   sees expired. If a client wrote the key in between, first committer
//!   wins: the expirer's commit fails, it writes nothing, and the next
//!   pass over that key tries again.
//! - A deleted key is a tombstone like any `DEL`: garbage collection then
//!   drops it and the versions under it, and compaction reclaims the bytes.
//!
//! ## Resting
//!
//! Redis samples only its table of keys that have a deadline, so with none
//! its cycle does nothing. The clock hand here reads versions whether or
//! not any has a deadline, and a key written often has many versions
//! until garbage collection drops them: under `redis-benchmark`'s one hot
//! key, ten passes a second read about five versions per `SET`, a sixth of
//! the server's instructions per `SET` for nothing. So the expirer rests:
//! once a whole pass over the keys (from the first key to the wrap) saw no
//! value with a deadline, and no version with a deadline was written since
//! the pass began, its ticks do nothing until one is.
//!
//! - A deadline can only arrive by a commit, and every commit's versions
//!   are counted (`deadline_writes`) after they are in the engine. A pass
//!   notes the count when it begins; it counts as clean only if the count
//!   is the same at its end, so a deadline written during the pass keeps
//!   the expirer awake.
//! - A pass judges each key by its version at the cycle's snapshot; a
//!   version newer than the snapshot is checked for a deadline too, so a
//!   commit that was in the engine but not yet published cannot slip by.
//! - A deadline written behind the hand after the pass's last check is
//!   counted after that check: the count then differs from the one the
//!   expirer rests at, and the next tick wakes it.
//! - While it rests, an expired key is still hidden by lazy expiry; only
//!   its bytes wait.

use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::keys::{self, Keyspace};
use crate::manager::{Inner, Isolation, TxnOptions, WeakInner};
use crate::transaction::Transaction;

/// How many times one tick repeats a cycle that found many expired keys.
pub const MAX_REPEATS: usize = 16;

/// What one expiry cycle did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpireReport {
    /// Versions it looked at.
    pub versions: u64,
    /// Keys whose visible value it looked at.
    pub keys: u64,
    /// Keys it found expired and deleted.
    pub expired: u64,
    /// Whether it reached the end of the keys (the next cycle starts over).
    pub wrapped: bool,
    /// Versions it looked at whose value carries a deadline (the visible
    /// version of each key, and any version newer than the snapshot).
    pub deadlines: u64,
}

/// Where the expirer is in its pass over the keys, and whether it rests
/// (see "Resting" in the module docs).
#[derive(Debug, Default)]
pub(crate) struct ExpirePass {
    /// Where the next cycle resumes (`None`: a new pass begins at the
    /// first key).
    resume_after: Option<Bytes>,
    /// While no cycle of this pass saw a deadline: `deadline_writes` when
    /// the pass began.
    clean_since: Option<u64>,
    /// After a clean pass: `deadline_writes` then. Ticks do nothing while
    /// the count stays the same.
    rest_at: Option<u64>,
}

/// Whether the expirer's tick may do nothing: no deadline was seen by the
/// last whole pass and none has been written since. Wakes the expirer
/// (for good, until another clean pass) when one has.
pub(crate) fn resting(inner: &Inner) -> bool {
    let written = inner.counters.deadline_writes.load(Ordering::Acquire);
    let mut pass = inner.expire_pass.lock();
    match pass.rest_at {
        Some(at) if at == written => true,
        Some(_) => {
            pass.rest_at = None;
            false
        }
        None => false,
    }
}

/// One cycle: finds expired keys in the next slice and deletes them.
pub(crate) fn cycle(inner: &Arc<Inner>) -> Result<ExpireReport> {
    inner.check_poisoned()?;
    let mut report = ExpireReport::default();
    // Read before the snapshot: every version counted here is in the
    // engine, and so in this scan (newer than the snapshot or not).
    let written = inner.counters.deadline_writes.load(Ordering::Acquire);
    let snapshot = inner.published();
    let now = inner.options.clock.now_ms();
    let (cursor, clean_since) = {
        let pass = inner.expire_pass.lock();
        match &pass.resume_after {
            Some(key) => (Some(key.clone()), pass.clean_since),
            None => (None, Some(written)),
        }
    };
    let start = match &cursor {
        Some(key) => Bound::Excluded(&key[..]),
        None => Bound::Unbounded,
    };
    let mut candidates: Vec<Bytes> = Vec::new();
    let mut last_key: Option<Bytes> = None;
    let mut decided = false;
    let limit = inner.options.expire_sample.max(1);
    // Only the key-value space has deadlines (SQL rows never expire).
    let range = keys::spaced_range(Keyspace::Kv, start, Bound::Unbounded);
    let mut scan = inner.engine.scan(keys::version_range(&range))?;
    report.wrapped = true;
    for item in scan.by_ref() {
        let (engine_key, value) = item?;
        let (_, key, ts) = keys::decode_version_key(&engine_key)?;
        if last_key.as_ref() != Some(&key) {
            // Stop only between keys, so the cursor names a key whose
            // newest version was looked at.
            if report.versions >= limit as u64 {
                report.wrapped = false;
                break;
            }
            last_key = Some(key.clone());
            decided = false;
        }
        report.versions += 1;
        if decided {
            continue;
        }
        let stored = keys::decode_stored(&engine_key, &value)?;
        let deadline = stored.as_ref().and_then(|s| s.deadline);
        report.deadlines += u64::from(deadline.is_some());
        if ts > snapshot {
            continue;
        }
        decided = true;
        report.keys += 1;
        if stored.is_some_and(|s| s.is_expired(now)) {
            candidates.push(key);
        }
    }
    drop(scan);
    if !candidates.is_empty() {
        match delete_expired(inner, &candidates) {
            Ok(n) => report.expired = n,
            // Someone wrote one of the keys meanwhile: keep the cursor
            // where it was, so the next cycle looks at them again.
            Err(err) if err.is_retryable() => {
                report.wrapped = false;
                inner.expire_pass.lock().clean_since = None;
                return Ok(report);
            }
            Err(err) => return Err(err),
        }
    }
    let clean_since = clean_since.filter(|_| report.deadlines == 0);
    {
        let mut pass = inner.expire_pass.lock();
        if report.wrapped {
            let since = inner.counters.deadline_writes.load(Ordering::Acquire);
            if clean_since == Some(since) {
                pass.rest_at = Some(since);
            }
            pass.resume_after = None;
            pass.clean_since = None;
        } else {
            pass.resume_after = last_key;
            pass.clean_since = clean_since;
        }
    }
    let c = &inner.counters;
    c.expire_cycles.fetch_add(1, Ordering::Relaxed);
    c.expired_keys.fetch_add(report.expired, Ordering::Relaxed);
    Ok(report)
}

/// Deletes the keys of `candidates` that are still expired, in one
/// transaction; returns how many it deleted.
fn delete_expired(inner: &Arc<Inner>, candidates: &[Bytes]) -> Result<u64> {
    let mut tx = Transaction::begin(Arc::clone(inner), TxnOptions::new(Isolation::Snapshot))?;
    let mut deleted = 0;
    for key in candidates {
        if tx
            .visible_stored(Keyspace::Kv, key)?
            .is_some_and(|s| s.is_expired(tx.now_ms()))
        {
            tx.delete(key)?;
            deleted += 1;
        }
    }
    tx.commit()?;
    Ok(deleted)
}

/// Starts the background expirer: a tick every `every` until the sender
/// is dropped or the manager is gone.
pub(crate) fn start(
    inner: WeakInner,
    every: Duration,
) -> Result<(mpsc::Sender<()>, JoinHandle<()>)> {
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("pydb-txn-expire".into())
        .spawn(move || {
            // Ten ticks a second would repeat a lasting failure ten times
            // a second: warn when the failure changes, not on every tick.
            let mut last_failure: Option<String> = None;
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                let Some(inner): Option<Arc<Inner>> = inner.upgrade() else {
                    return;
                };
                if resting(&inner) {
                    continue;
                }
                for _ in 0..MAX_REPEATS {
                    match cycle(&inner) {
                        // Redis's rule: go on while over a quarter expired.
                        Ok(r) if r.expired * 4 > r.keys && !r.wrapped => {}
                        Ok(_) => {
                            last_failure = None;
                            break;
                        }
                        Err(Error::Poisoned { .. }) => {
                            // Nothing can be written until a reopen.
                            tracing::warn!("the manager is poisoned: background expiry stops");
                            return;
                        }
                        Err(err) => {
                            let text = err.to_string();
                            if last_failure.as_deref() != Some(text.as_str()) {
                                tracing::warn!(%err, "background expiry failed");
                                last_failure = Some(text);
                            }
                            break;
                        }
                    }
                }
            }
        })
        .map_err(|e| pydb_storage::Error::InvalidDatabase {
            path: "pydb-txn".into(),
            reason: format!("cannot start the expirer thread: {e}"),
        })?;
    Ok((stop, thread))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{ManualClock, Options, TxnManager};
    use pydb_storage::MemoryStorage;

    fn manager(clock: &ManualClock) -> TxnManager {
        let options = Options {
            clock: clock.clone().into(),
            expire_interval: None,
            gc_interval: None,
            expire_sample: 2,
            ..Options::default()
        };
        TxnManager::open(Arc::new(MemoryStorage::new()), options).unwrap()
    }

    /// Runs cycles until one wraps; returns the deadlines they saw.
    fn pass(mgr: &TxnManager) -> u64 {
        let mut seen = 0;
        loop {
            let report = mgr.expire_cycle().unwrap();
            seen += report.deadlines;
            if report.wrapped {
                return seen;
            }
        }
    }

    fn set(mgr: &TxnManager, key: &[u8], deadline: Option<u64>) {
        mgr.transaction(Isolation::ReadCommitted, |tx| {
            tx.set_with_deadline(key, b"v", deadline)
        })
        .unwrap();
    }

    #[test]
    fn rests_after_a_pass_without_deadlines_and_wakes_on_one() {
        let clock = ManualClock::new(1_000);
        let mgr = manager(&clock);
        for key in [&b"a"[..], b"b", b"c", b"d", b"e"] {
            set(&mgr, key, None);
        }
        assert!(!resting(&mgr.inner), "no pass has run yet");
        assert_eq!(pass(&mgr), 0);
        assert!(resting(&mgr.inner));
        // Writes without a deadline do not wake it.
        set(&mgr, b"a", None);
        assert!(resting(&mgr.inner));

        // A deadline wakes it, and the passes that see it keep it awake
        // until the key is expired and deleted.
        set(&mgr, b"c", Some(2_000));
        assert!(!resting(&mgr.inner));
        assert_eq!(pass(&mgr), 1);
        assert!(!resting(&mgr.inner), "the pass saw a deadline");
        clock.set(3_000);
        assert_eq!(pass(&mgr), 1);
        assert_eq!(mgr.get_latest(b"c").unwrap(), None);
        assert!(!resting(&mgr.inner), "the pass that deleted it saw it");
        assert_eq!(pass(&mgr), 0);
        assert!(resting(&mgr.inner));
    }

    #[test]
    fn a_deadline_written_during_a_pass_keeps_it_awake() {
        let clock = ManualClock::new(1_000);
        let mgr = manager(&clock);
        for key in [&b"a"[..], b"b", b"c", b"d", b"e"] {
            set(&mgr, key, None);
        }
        // The pass's first cycle passes "a" and "b"; the deadline lands
        // behind the hand, where this pass does not look again.
        assert!(!mgr.expire_cycle().unwrap().wrapped);
        set(&mgr, b"a", Some(5_000));
        assert_eq!(pass(&mgr), 0);
        assert!(
            !resting(&mgr.inner),
            "a deadline was written during the pass"
        );
        assert_eq!(pass(&mgr), 1);
        assert!(!resting(&mgr.inner));
    }

    #[test]
    fn a_deadline_from_before_the_open_keeps_it_awake() {
        let clock = ManualClock::new(1_000);
        let engine: Arc<dyn pydb_storage::StorageEngine> = Arc::new(MemoryStorage::new());
        let options = || Options {
            clock: clock.clone().into(),
            expire_interval: None,
            gc_interval: None,
            ..Options::default()
        };
        {
            let mgr = TxnManager::open(Arc::clone(&engine), options()).unwrap();
            set(&mgr, b"k", Some(9_000));
        }
        let mgr = TxnManager::open(engine, options()).unwrap();
        assert_eq!(pass(&mgr), 1);
        assert!(!resting(&mgr.inner));
    }
}
