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
//! Removal is a plain engine `write_batch` of deletes, in chunks, beside
//! commits: it never changes what a snapshot at or above `W` reads, so it
//! needs no commit timestamp. Before deleting, the new horizon (`W`) is
//! written to the metadata key `gc_horizon` and checked by "as of" begins.

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
    /// Versions it looked at (every version in the engine).
    pub versions: u64,
    /// Versions it removed.
    pub garbage: u64,
}

/// One collection, serialized with other collections.
pub(crate) fn collect(inner: &Inner) -> Result<GcReport> {
    let _one_at_a_time = inner.gc_lock.lock();
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
    let mut report = GcReport {
        watermark,
        ..GcReport::default()
    };
    let mut garbage = WriteBatch::new();
    let mut current: Option<Bytes> = None;
    // Whether the current key's newest version at or below the watermark
    // has been seen (everything after it is garbage).
    let mut settled = false;
    for item in inner.engine.scan(keys::all_versions())? {
        let (engine_key, value) = item?;
        let (key, ts) = keys::decode_spaced(&engine_key)?;
        report.versions += 1;
        if current.as_ref() != Some(&key) {
            // Flush only between keys: a tombstone and the older versions
            // it hides go in one atomic batch, or a reader could see an
            // older value resurface in between.
            if garbage.len() >= DELETE_CHUNK {
                report.garbage += flush(inner, &mut garbage)?;
            }
            current = Some(key);
            settled = false;
        }
        if ts > watermark {
            continue;
        }
        if settled {
            garbage.delete(engine_key);
        } else {
            settled = true;
            let gone = match keys::decode_stored(&engine_key, &value)? {
                None => true,
                Some(stored) => stored.is_expired(expired_before),
            };
            if gone {
                garbage.delete(engine_key);
            }
        }
    }
    report.garbage += flush(inner, &mut garbage)?;
    let c = &inner.counters;
    c.collections.fetch_add(1, Ordering::Relaxed);
    c.garbage_collected
        .fetch_add(report.garbage, Ordering::Relaxed);
    c.versions_at_last_collection
        .store(report.versions, Ordering::Relaxed);
    tracing::debug!(?report, "garbage collected");
    Ok(report)
}

fn flush(inner: &Inner, garbage: &mut WriteBatch) -> Result<u64> {
    if garbage.is_empty() {
        return Ok(0);
    }
    inner.engine.write_batch(garbage)?;
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
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                let Some(inner): Option<Arc<Inner>> = inner.upgrade() else {
                    return;
                };
                if let Err(err) = collect(&inner) {
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
