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
}

/// One cycle: finds expired keys in the next slice and deletes them.
pub(crate) fn cycle(inner: &Arc<Inner>) -> Result<ExpireReport> {
    inner.check_poisoned()?;
    let mut report = ExpireReport::default();
    let snapshot = inner.published();
    let now = inner.options.clock.now_ms();
    let cursor = inner.expire_cursor.lock().clone();
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
        if decided || ts > snapshot {
            continue;
        }
        decided = true;
        report.keys += 1;
        if keys::decode_stored(&engine_key, &value)?.is_some_and(|s| s.is_expired(now)) {
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
                return Ok(report);
            }
            Err(err) => return Err(err),
        }
    }
    *inner.expire_cursor.lock() = if report.wrapped { None } else { last_key };
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
