//! The lock manager of strict two-phase locking.
//!
//! A transaction under [`Concurrency::Locking`](crate::Concurrency) asks
//! for a lock before every access and keeps every lock until it commits or
//! rolls back (that is the *strict* in strict 2PL). Two kinds of resource:
//!
//! - a **key**, in shared (`S`, for reading) or exclusive (`X`, for
//!   writing) mode. `S` is compatible with `S`; `X` with nothing. A holder
//!   of `S` that asks for `X` is *upgraded* once no one else holds the key.
//! - a **key range**, always shared, taken by a scan. It conflicts with an
//!   `X` lock on any key inside it, held or asked for by someone else. This
//!   is how phantoms are prevented: while a scan's range lock is held, no
//!   other transaction can insert a key into the range, even into an empty
//!   one (a range lock is a lock on the gaps, not just on existing keys).
//!
//! ## Waiting, deadlocks, timeouts
//!
//! A request that conflicts waits on a condition variable, after writing
//! into the *waits-for graph* an edge from the waiter to every transaction
//! it waits for. Before it sleeps it walks the graph from itself; a path
//! back to itself is a deadlock, and the youngest transaction of the cycle
//! (the highest id: it has done the least work) is the victim. If the
//! victim is the requester, it fails at once with
//! [`Error::Deadlock`](crate::Error::Deadlock); otherwise the victim is
//! marked and woken, fails with the same error, and its rollback releases
//! its locks. Every wait is bounded by the transaction's [`LockWait`]:
//! `NoWait` fails a conflicting request at once, `Timeout(d)` after `d`.
//!
//! Everything lives under one mutex. That is the simplest correct design
//! and what a student can check by reading; the table is only touched by
//! locking transactions, never by MVCC reads.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use pydb_storage::KeyRange;

use crate::error::{Error, Result};
use crate::keys::range_is_empty;
use crate::keys::{describe_key, describe_range};

/// How long a locking transaction waits for a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockWait {
    /// Fail at once if the lock is not free.
    NoWait,
    /// Wait at most this long.
    Timeout(Duration),
}

/// The mode of a key lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Mode {
    Shared,
    Exclusive,
}

/// What a lock is on.
#[derive(Debug, Clone)]
pub(crate) enum Resource<'a> {
    Key(&'a [u8]),
    Range(&'a KeyRange),
}

impl Resource<'_> {
    fn describe(&self) -> String {
        match self {
            Resource::Key(k) => format!("key {}", describe_key(k)),
            Resource::Range(r) => describe_range(r),
        }
    }
}

#[derive(Debug, Default)]
struct Table {
    /// Key locks: who holds each key, in which mode.
    keys: BTreeMap<Bytes, Vec<(u64, Mode)>>,
    /// Range locks (shared), with their holder.
    ranges: Vec<(u64, KeyRange)>,
    /// The keys each transaction holds, so release is cheap.
    held: HashMap<u64, Vec<Bytes>>,
    /// The waits-for graph: waiter -> the transactions it waits for.
    waits_for: HashMap<u64, Vec<u64>>,
    /// Deadlock victims that have not noticed yet.
    victims: HashSet<u64>,
}

impl Table {
    /// The other transactions whose locks conflict with `txn` taking
    /// `resource` in `mode`.
    fn conflicts(&self, txn: u64, resource: &Resource<'_>, mode: Mode) -> Vec<u64> {
        let mut out = Vec::new();
        match resource {
            Resource::Key(key) => {
                if let Some(holders) = self.keys.get(*key) {
                    for &(holder, held) in holders {
                        if holder != txn && (mode == Mode::Exclusive || held == Mode::Exclusive) {
                            out.push(holder);
                        }
                    }
                }
                if mode == Mode::Exclusive {
                    for (holder, range) in &self.ranges {
                        if *holder != txn && range.contains(key) {
                            out.push(*holder);
                        }
                    }
                }
            }
            Resource::Range(range) => {
                let (start, end) = range.as_slices();
                if !range_is_empty(start, end) {
                    for (_, holders) in self.keys.range::<[u8], _>((start, end)) {
                        for &(holder, held) in holders {
                            if holder != txn && held == Mode::Exclusive {
                                out.push(holder);
                            }
                        }
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    fn grant(&mut self, txn: u64, resource: &Resource<'_>, mode: Mode) {
        match resource {
            Resource::Key(key) => {
                let holders = self.keys.entry(Bytes::copy_from_slice(key)).or_default();
                match holders.iter_mut().find(|(h, _)| *h == txn) {
                    Some((_, held)) => *held = (*held).max(mode),
                    None => {
                        holders.push((txn, mode));
                        self.held
                            .entry(txn)
                            .or_default()
                            .push(Bytes::copy_from_slice(key));
                    }
                }
            }
            Resource::Range(range) => self.ranges.push((txn, (*range).clone())),
        }
    }

    /// A cycle in the waits-for graph through `from`, if any.
    fn cycle_through(&self, from: u64) -> Option<Vec<u64>> {
        // Depth-first search with an explicit stack of (node, path).
        let mut stack = vec![(from, vec![from])];
        let mut seen = HashSet::new();
        while let Some((node, path)) = stack.pop() {
            for &next in self.waits_for.get(&node).map(Vec::as_slice).unwrap_or(&[]) {
                if next == from {
                    return Some(path);
                }
                if seen.insert(next) {
                    let mut longer = path.clone();
                    longer.push(next);
                    stack.push((next, longer));
                }
            }
        }
        None
    }
}

/// The lock table and the condition variable waiters sleep on.
#[derive(Debug, Default)]
pub(crate) struct LockManager {
    table: Mutex<Table>,
    released: Condvar,
}

impl LockManager {
    /// Takes `resource` in `mode` for `txn`, waiting as `wait` allows.
    pub(crate) fn acquire(
        &self,
        txn: u64,
        resource: Resource<'_>,
        mode: Mode,
        wait: LockWait,
    ) -> Result<()> {
        let started = Instant::now();
        let mut table = self.table.lock();
        loop {
            if table.victims.remove(&txn) {
                table.waits_for.remove(&txn);
                return Err(Error::Deadlock {
                    victim: txn,
                    resource: resource.describe(),
                });
            }
            let conflicts = table.conflicts(txn, &resource, mode);
            if conflicts.is_empty() {
                table.waits_for.remove(&txn);
                table.grant(txn, &resource, mode);
                return Ok(());
            }
            let deadline = match wait {
                LockWait::NoWait => None,
                LockWait::Timeout(d) => Some(started + d),
            };
            let timed_out = || Error::LockTimeout {
                txn,
                resource: resource.describe(),
                waited: started.elapsed(),
            };
            let Some(deadline) = deadline.filter(|d| Instant::now() < *d) else {
                table.waits_for.remove(&txn);
                return Err(timed_out());
            };
            table.waits_for.insert(txn, conflicts);
            if let Some(cycle) = table.cycle_through(txn) {
                let victim = cycle.iter().copied().max().unwrap_or(txn);
                tracing::debug!(?cycle, victim, "deadlock");
                if victim == txn {
                    table.waits_for.remove(&txn);
                    return Err(Error::Deadlock {
                        victim: txn,
                        resource: resource.describe(),
                    });
                }
                table.victims.insert(victim);
                self.released.notify_all();
            }
            if self.released.wait_until(&mut table, deadline).timed_out() {
                // One last look: the lock may have been freed just now.
                if table.conflicts(txn, &resource, mode).is_empty() && !table.victims.contains(&txn)
                {
                    continue;
                }
                table.waits_for.remove(&txn);
                return Err(timed_out());
            }
        }
    }

    /// Releases every lock `txn` holds (at commit or rollback) and wakes
    /// the waiters.
    pub(crate) fn release_all(&self, txn: u64) {
        let mut table = self.table.lock();
        let mut changed = false;
        if let Some(keys) = table.held.remove(&txn) {
            for key in keys {
                if let Some(holders) = table.keys.get_mut(&key) {
                    holders.retain(|(h, _)| *h != txn);
                    if holders.is_empty() {
                        table.keys.remove(&key);
                    }
                }
            }
            changed = true;
        }
        let ranges = table.ranges.len();
        table.ranges.retain(|(h, _)| *h != txn);
        changed |= table.ranges.len() != ranges;
        table.waits_for.remove(&txn);
        table.victims.remove(&txn);
        if changed {
            self.released.notify_all();
        }
    }

    /// The number of key and range locks held, for stats.
    pub(crate) fn held_locks(&self) -> usize {
        let table = self.table.lock();
        table.keys.values().map(Vec::len).sum::<usize>() + table.ranges.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const NO_WAIT: LockWait = LockWait::NoWait;

    #[test]
    fn shared_shares_exclusive_excludes_and_upgrades() {
        let lm = LockManager::default();
        lm.acquire(1, Resource::Key(b"k"), Mode::Shared, NO_WAIT)
            .unwrap();
        lm.acquire(2, Resource::Key(b"k"), Mode::Shared, NO_WAIT)
            .unwrap();
        let err = lm
            .acquire(1, Resource::Key(b"k"), Mode::Exclusive, NO_WAIT)
            .unwrap_err();
        assert!(matches!(err, Error::LockTimeout { txn: 1, .. }), "{err}");
        assert!(err.to_string().contains("'k'"), "{err}");
        lm.release_all(2);
        lm.acquire(1, Resource::Key(b"k"), Mode::Exclusive, NO_WAIT)
            .unwrap();
        assert!(
            lm.acquire(2, Resource::Key(b"k"), Mode::Shared, NO_WAIT)
                .is_err()
        );
        lm.release_all(1);
        assert_eq!(lm.held_locks(), 0);
    }

    #[test]
    fn a_range_lock_blocks_inserts_into_its_gaps() {
        let lm = LockManager::default();
        let range = KeyRange::new(&b"b"[..]..&b"d"[..]);
        lm.acquire(1, Resource::Range(&range), Mode::Shared, NO_WAIT)
            .unwrap();
        let err = lm
            .acquire(2, Resource::Key(b"c"), Mode::Exclusive, NO_WAIT)
            .unwrap_err();
        assert!(err.to_string().contains("'c'"), "{err}");
        lm.acquire(2, Resource::Key(b"d"), Mode::Exclusive, NO_WAIT)
            .unwrap();
        lm.acquire(2, Resource::Key(b"c"), Mode::Shared, NO_WAIT)
            .unwrap();
        // A range over a key someone writes conflicts the other way too.
        let over_d = KeyRange::new(&b"c"[..]..=&b"d"[..]);
        assert!(
            lm.acquire(1, Resource::Range(&over_d), Mode::Shared, NO_WAIT)
                .is_err()
        );
    }

    #[test]
    fn the_youngest_of_a_deadlock_is_the_victim() {
        let lm = Arc::new(LockManager::default());
        let wait = LockWait::Timeout(Duration::from_secs(10));
        lm.acquire(1, Resource::Key(b"a"), Mode::Exclusive, wait)
            .unwrap();
        lm.acquire(2, Resource::Key(b"b"), Mode::Exclusive, wait)
            .unwrap();
        let lm2 = Arc::clone(&lm);
        let older = std::thread::spawn(move || {
            // Transaction 1 waits for b (held by 2)...
            lm2.acquire(1, Resource::Key(b"b"), Mode::Exclusive, wait)
        });
        while !lm.table.lock().waits_for.contains_key(&1) {
            std::thread::yield_now();
        }
        // ... and 2 now waits for a: a cycle, and 2 is the younger.
        let err = lm
            .acquire(2, Resource::Key(b"a"), Mode::Exclusive, wait)
            .unwrap_err();
        assert!(matches!(err, Error::Deadlock { victim: 2, .. }), "{err}");
        lm.release_all(2);
        older.join().unwrap().unwrap();
    }

    #[test]
    fn an_older_waiter_is_not_the_victim() {
        let lm = Arc::new(LockManager::default());
        let wait = LockWait::Timeout(Duration::from_secs(10));
        lm.acquire(1, Resource::Key(b"a"), Mode::Exclusive, wait)
            .unwrap();
        lm.acquire(2, Resource::Key(b"b"), Mode::Exclusive, wait)
            .unwrap();
        let lm2 = Arc::clone(&lm);
        let younger = std::thread::spawn(move || {
            let r = lm2.acquire(2, Resource::Key(b"a"), Mode::Exclusive, wait);
            lm2.release_all(2);
            r
        });
        while !lm.table.lock().waits_for.contains_key(&2) {
            std::thread::yield_now();
        }
        // 1 closes the cycle, but 2 (younger, already waiting) is chosen.
        lm.acquire(1, Resource::Key(b"b"), Mode::Exclusive, wait)
            .unwrap();
        let err = younger.join().unwrap().unwrap_err();
        assert!(matches!(err, Error::Deadlock { victim: 2, .. }), "{err}");
    }

    #[test]
    fn a_wait_times_out() {
        let lm = LockManager::default();
        lm.acquire(1, Resource::Key(b"a"), Mode::Exclusive, NO_WAIT)
            .unwrap();
        let wait = LockWait::Timeout(Duration::from_millis(30));
        let err = lm
            .acquire(2, Resource::Key(b"a"), Mode::Shared, wait)
            .unwrap_err();
        let Error::LockTimeout { waited, .. } = err else {
            panic!("{err}")
        };
        assert!(waited >= Duration::from_millis(30));
    }
}
