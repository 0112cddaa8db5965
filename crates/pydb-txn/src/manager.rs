//! The transaction manager: timestamps, the commit pipeline, the watermark.
//!
//! ## Timestamps
//!
//! Every commit that writes gets a *commit timestamp* (`ts`), 1, 2, 3, ...
//! in the order commits pass validation. `published` is the highest `ts`
//! whose commit, and every commit before it, is in the engine: a
//! transaction begins with `snapshot = published`, and sees exactly the
//! versions with `ts <= snapshot`.
//!
//! ## The commit pipeline
//!
//! ```text
//!  validate + assign ts          write (one engine batch)       publish
//!  [commit mutex: checks,  ──▶   [group leader: takes every  ──▶ published = max ts,
//!   ts = last + 1, enqueue]       queued commit, one           wake the group
//!                                 write_batch + fsync]
//! ```
//!
//! 1. Under the *commit mutex* (no I/O): the write-write check of snapshot
//!    isolation, the SSI check, the next `ts`, and the commit is queued.
//!    Queue order is therefore `ts` order. The transaction's write buffer
//!    moves into the queue as it is: a commit of a thousand rows copies
//!    no key or value on its way to the engine batch.
//! 2. Outside it, one committer becomes the *group leader*: it takes every
//!    queued commit and writes all their versions, plus the metadata key
//!    `last_commit_ts`, in **one** `write_batch`. The engine makes the batch
//!    atomic and durable (its own group commit shares the fsync). While the
//!    leader writes, new commits validate and queue behind it, and the next
//!    leader takes them all: this is group commit, and concurrent commits
//!    share one engine write and one fsync. Before it takes the queue, a
//!    leader may wait a moment for the committers of the last group to
//!    come back (the *commit delay*, see `Inner::wait_for_cohort`), so
//!    that they share one fsync instead of splitting over two.
//! 3. The leader *publishes*: `published` jumps to the group's highest `ts`
//!    and every member returns. Groups are written one at a time in `ts`
//!    order, so `published` only ever covers complete commits.
//!
//! After a crash the engine holds some prefix of the groups (a batch is all
//! or nothing, and a commit returned only after its batch was durable);
//! opening reads `last_commit_ts` from that prefix, and every version in
//! the engine has a `ts` at or below it.
//!
//! If an engine write fails, nobody knows what reached the disk; the
//! manager is poisoned (as the engines are) and refuses work until it is
//! reopened.
//!
//! ## The watermark
//!
//! Running transactions register their snapshot. The *watermark* is the
//! oldest registered snapshot (or `published` if none). Versions that no
//! snapshot at or above the watermark can see are garbage (see `gc`), and
//! conflict bookkeeping older than the watermark is dropped.
//!
//! ## How a read avoids the snapshot registry
//!
//! Registering a snapshot costs two mutexes and four `BTreeMap` updates
//! per transaction, shared by every thread: for a server answering
//! pipelined `GET`s, more than the read itself. Yet a single read of the
//! latest commit ([`TxnManager::get_latest_in`]) needs none of what the
//! registry gives a transaction, except that garbage collection must not
//! take its version away. It runs like this:
//!
//! ```text
//!   e1 = garbage_epoch      (collections' deleting batches begun so far)
//!   S  = published
//!   v  = the engine's newest version of the key with ts <= S
//!   e2 = garbage_epoch      e1 == e2: answer v;  else: start again
//! ```
//!
//! Reading at `S = published` sees exactly the commits up to `S`, whole:
//! every version with `ts <= S` was in the engine before `published`
//! reached `S`, and versions above `S` are outside the range read. No
//! uncommitted write is in the engine at all (writes are buffered in
//! their transaction). What could go wrong is a collection: it removes a
//! version only when a newer one at or below its watermark `W` shadows it,
//! and `W` is at most the `published` it read. A collection bumps
//! `garbage_epoch` *after* it read `W` and *before* each batch of deletes
//! it writes. So:
//!
//! - if a collection's bump is counted in `e1`, it read `W` before this
//!   read loaded `S`, so `W <= S`: the version `S` sees is the newest at or
//!   below `S`, and is either above `W` (kept), or the one `W` sees (kept,
//!   or removed with everything older only if it is a tombstone or an
//!   expired value: the key is absent at `S` either way);
//! - if the read saw any delete of a later collection, that delete came
//!   after its bump, so `e2` counts the bump and the read starts again with
//!   a newer `S` (the engine orders a read that sees a write after that
//!   write, as any thread-safe engine does);
//! - a later collection whose deletes the read did not see changed
//!   nothing the read returned.
//!
//! Collections delete at most once a second, so the retry almost never
//! runs; after a few retries in a row (a collector deleting without
//! pause) the read falls back to a registered snapshot, so it always ends.
//! The read judges expiry at a clock reading taken after `e1` (and only
//! for a value that has a deadline: most have none, and reading the clock
//! was a visible share of a pipelined `GET`), so a value a collection
//! removed as expired is expired for it too. Under locking
//! concurrency a read must take a shared lock, so there the fast read is
//! a plain read-only transaction.

use std::collections::{BTreeMap, HashMap};
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use pydb_storage::{StorageEngine, WriteBatch};

use crate::buffered::Writes;
use crate::clock::ClockHandle;
use crate::error::{Error, Result};
use crate::keys::{self, Stored};
use crate::lock::{LockManager, LockWait};
use crate::ssi;
use crate::transaction::{Transaction, TxnScan};

/// The isolation level of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isolation {
    /// Every read sees the latest committed data; writes are buffered and
    /// applied atomically at commit, last committer wins.
    ReadCommitted,
    /// Every read sees the snapshot taken at begin; a write-write conflict
    /// with a concurrent transaction aborts the later committer.
    Snapshot,
    /// Snapshot isolation plus the SSI check: the committed transactions
    /// are equivalent to some serial order.
    Serializable,
}

impl Isolation {
    /// Every level, weakest first.
    pub const ALL: [Isolation; 3] = [
        Isolation::ReadCommitted,
        Isolation::Snapshot,
        Isolation::Serializable,
    ];
}

/// How a transaction keeps out of other transactions' way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Concurrency {
    /// Multi-version concurrency control: readers never wait; conflicts are
    /// found at commit, per the isolation level.
    Mvcc,
    /// Strict two-phase locking: shared locks for reads and scans (range
    /// locks), exclusive locks for writes, all held to the end. Always
    /// serializable, whatever the isolation level says.
    Locking,
}

/// How a manager runs. `Options::default()` is MVCC, a 5 s lock wait,
/// background garbage collection every second, 10 retries, the system
/// clock, and active expiry every 100 ms looking at up to 256 versions.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The concurrency control of transactions that do not choose one.
    pub concurrency: Concurrency,
    /// How long a locking transaction waits for a lock by default.
    pub lock_wait: LockWait,
    /// How often garbage is collected in the background (`None`: only on
    /// demand, through [`TxnManager::gc`]).
    pub gc_interval: Option<Duration>,
    /// How many commits below the newest keep their versions for
    /// [`TxnOptions::as_of`] reads even when no transaction needs them.
    pub history: u64,
    /// How many times [`TxnManager::transaction`] retries a retryable error.
    pub max_retries: u32,
    /// Where expiry deadlines are judged: the system clock, or a test's
    /// [`ManualClock`](crate::ManualClock).
    pub clock: ClockHandle,
    /// How often the background expirer deletes expired keys (`None`:
    /// only on demand, through [`TxnManager::expire_cycle`]). Expired keys
    /// are invisible at once either way; this only reclaims them.
    pub expire_interval: Option<Duration>,
    /// How many versions one expiry cycle looks at, at most: the bound on
    /// its work (see `expire`).
    pub expire_sample: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            concurrency: Concurrency::Mvcc,
            lock_wait: LockWait::Timeout(Duration::from_secs(5)),
            gc_interval: Some(Duration::from_secs(1)),
            history: 0,
            max_retries: 10,
            clock: ClockHandle::default(),
            expire_interval: Some(Duration::from_millis(100)),
            expire_sample: 256,
        }
    }
}

/// How one transaction runs.
#[derive(Debug, Clone, PartialEq)]
pub struct TxnOptions {
    /// The isolation level.
    pub isolation: Isolation,
    /// The concurrency control; `None` takes the manager's.
    pub concurrency: Option<Concurrency>,
    /// Refuse writes.
    pub read_only: bool,
    /// Read as of this commit timestamp (implies read-only and snapshot
    /// reads); fails if the versions are already collected.
    pub as_of: Option<u64>,
    /// The lock wait of a locking transaction; `None` takes the manager's.
    pub lock_wait: Option<LockWait>,
}

impl TxnOptions {
    /// A read-write transaction at `isolation`, with the manager's defaults.
    pub fn new(isolation: Isolation) -> Self {
        Self {
            isolation,
            concurrency: None,
            read_only: false,
            as_of: None,
            lock_wait: None,
        }
    }

    /// The same, under `concurrency`.
    pub fn concurrency(mut self, concurrency: Concurrency) -> Self {
        self.concurrency = Some(concurrency);
        self
    }

    /// The same, read-only.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// A read-only transaction that reads as of commit `ts`.
    pub fn as_of(ts: u64) -> Self {
        Self {
            as_of: Some(ts),
            read_only: true,
            ..Self::new(Isolation::Snapshot)
        }
    }

    /// The same, with lock wait `wait`.
    pub fn lock_wait(mut self, wait: LockWait) -> Self {
        self.lock_wait = Some(wait);
        self
    }
}

/// Counters of a manager.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnStats {
    /// Transactions begun.
    pub begun: u64,
    /// Transactions committed (read-only ones included).
    pub committed: u64,
    /// Transactions rolled back, by the user or by an error.
    pub rolled_back: u64,
    /// Commits refused by a write-write conflict.
    pub write_conflicts: u64,
    /// Commits refused by the SSI check.
    pub serialization_failures: u64,
    /// Engine write batches the commit pipeline issued (groups).
    pub commit_groups: u64,
    /// Versions written (values and tombstones).
    pub versions_written: u64,
    /// Versions removed by garbage collection.
    pub garbage_collected: u64,
    /// Garbage collections run.
    pub collections: u64,
    /// Versions seen by the last collection (the versions in the engine then).
    pub versions_at_last_collection: u64,
    /// Transactions running now.
    pub active: u64,
    /// The last published commit timestamp.
    pub last_commit: u64,
    /// The oldest snapshot still in use (or the last commit).
    pub watermark: u64,
    /// Keys the expirer deleted because their deadline had passed.
    pub expired_keys: u64,
    /// Expiry cycles run.
    pub expire_cycles: u64,
    /// Commits before this may have lost versions to garbage collection.
    pub gc_horizon: u64,
    /// Locks held in the lock manager.
    pub locks_held: u64,
    /// Serializable transactions the SSI tracker keeps (running ones, and
    /// committed ones a running transaction may still depend on).
    pub ssi_tracked: u64,
}

/// What the commit mutex guards.
#[derive(Debug, Default)]
struct CommitState {
    /// The last commit timestamp handed out.
    last_assigned: u64,
    /// For each recently written key, by its [`CommitState::fingerprint`],
    /// the timestamp of its last commit (assigned, maybe not yet
    /// published): the write-write check.
    ///
    /// A fingerprint, not the key: keeping the key cost a share of its
    /// `Bytes` per written key (an allocation, as the buffer's keys are
    /// not shared yet), its comparison on lookup, and its release when
    /// pruned, a few hundred instructions of every inserted row. Two keys
    /// with one fingerprint can only make the check refuse a commit it
    /// would have let through, a retryable [`Error::WriteConflict`] (with
    /// a random 64-bit seed, about one chance in 2^64 per pair of keys),
    /// never let one through it would have refused: everything that rests
    /// on the check (first committer wins, `gc`'s created keys, the
    /// insert's unrecorded read in `ssi`) still holds.
    last_writer: HashMap<u64, u64, foldhash::fast::RandomState>,
    /// The fingerprints' hasher: foldhash rather than std's SipHash, which
    /// cost about four times as much per key (every written key is hashed
    /// twice under the commit mutex, checked, then recorded). Keys are
    /// chosen by clients; the seed is random per manager, so colliding
    /// keys cannot be prepared in advance.
    fingerprints: foldhash::fast::RandomState,
    /// Size of `last_writer` after its last pruning.
    last_writer_pruned: usize,
    /// Serializable transactions' reads and rw-dependency flags.
    ssi: ssi::Tracker,
}

impl CommitState {
    /// The key's fingerprint in `last_writer`.
    fn fingerprint(&self, key: &[u8]) -> u64 {
        std::hash::BuildHasher::hash_one(&self.fingerprints, key)
    }
}

/// The longest a group leader waits for its cohort (see
/// [`Inner::wait_for_cohort`]).
const MAX_COMMIT_DELAY: Duration = Duration::from_millis(2);

/// A group write faster than this (no fsync) is not worth delaying for.
const MIN_DELAYED_WRITE: Duration = Duration::from_micros(100);

/// A commit waiting to be written by a group leader.
#[derive(Debug)]
struct Queued {
    ts: u64,
    /// The transaction's write buffer, by spaced key.
    writes: Writes,
    /// The keys it read and found no version of, ascending without
    /// repeats: see [`Queued::gc_candidates`].
    created: Vec<Bytes>,
}

impl Queued {
    /// The keys of this commit that garbage collection must walk: all it
    /// wrote except the keys it created (its [`Write::first`] ones and
    /// the `created` list's, see `gc`) with a value that never expires. Such a key's
    /// version is its only one and stays visible until a
    /// later commit, which marks the key again, writes over it; a delete
    /// (a tombstone) or an expiring value becomes garbage by itself.
    fn gc_candidates(&self) -> impl Iterator<Item = &Bytes> {
        let mut created = self.created.iter().peekable();
        self.writes.iter().filter_map(move |(key, write)| {
            let key = key.bytes();
            while created.next_if(|c| *c < key).is_some() {}
            let first_version = created.next_if(|c| *c == key).is_some() || write.first;
            let lasting = write.value.as_ref().is_some_and(|s| s.deadline.is_none());
            (!(first_version && lasting)).then_some(key)
        })
    }
}

#[derive(Debug, Default)]
struct Group {
    queue: Vec<Queued>,
    leader: bool,
    /// The last published commit (mirrors `Inner::published`).
    published: u64,
    poisoned: Option<String>,
    /// Commits the engine refused as invalid (a key or value over its
    /// limits): published over (nothing of them was written), and the
    /// error handed to their committer.
    refused: HashMap<u64, pydb_storage::Error>,
    /// Members of the last group written: the cohort the commit delay
    /// waits for (see [`Inner::wait_for_cohort`]).
    last_size: usize,
    /// How long the last group's engine write took.
    last_write: Duration,
}

#[derive(Debug, Default)]
pub(crate) struct Active {
    /// Snapshot -> number of running transactions that hold it.
    snapshots: BTreeMap<u64, usize>,
    /// Clock reading at begin -> number of running transactions that
    /// judge expiry at it. A value expired before the oldest of these (and
    /// before now) is expired for every transaction that can still read.
    clocks: BTreeMap<u64, usize>,
    /// Commits before this may have lost versions to garbage collection.
    pub(crate) horizon: u64,
}

impl Active {
    /// The oldest snapshot in use.
    pub(crate) fn snapshots_oldest(&self) -> Option<u64> {
        self.snapshots.keys().next().copied()
    }

    /// The oldest clock reading a running transaction judges expiry at.
    pub(crate) fn clocks_oldest(&self) -> Option<u64> {
        self.clocks.keys().next().copied()
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) begun: AtomicU64,
    pub(crate) committed: AtomicU64,
    pub(crate) rolled_back: AtomicU64,
    pub(crate) write_conflicts: AtomicU64,
    pub(crate) serialization_failures: AtomicU64,
    pub(crate) commit_groups: AtomicU64,
    pub(crate) versions_written: AtomicU64,
    pub(crate) garbage_collected: AtomicU64,
    pub(crate) collections: AtomicU64,
    pub(crate) versions_at_last_collection: AtomicU64,
    pub(crate) expired_keys: AtomicU64,
    pub(crate) expire_cycles: AtomicU64,
    /// Versions with an expiry deadline written so far: counted after the
    /// engine write (with `Release`), so that an expirer that reads a
    /// count (with `Acquire`) finds those versions in the engine (see
    /// "Resting" in `expire`).
    pub(crate) deadline_writes: AtomicU64,
}

/// Where a version's user value starts in its engine value (past the
/// header), and its expiry deadline: what [`Inner::read_latest_into`]
/// found in its [`ValueSlot`].
type ValueAt = (usize, Option<u64>);

/// Where a registry-free read ([`Inner::read_latest_into`]) puts the
/// engine value it finds: an owned `Bytes` (a GET hands it on), or a
/// buffer the caller keeps between reads (a SQL point select decodes the
/// row from it and reads again: no allocation per read).
trait ValueSlot {
    /// Reads the first value in `start..=end` into the slot; whether there
    /// was one.
    fn fill(&mut self, engine: &dyn StorageEngine, start: &[u8], end: &[u8]) -> Result<bool>;
    /// The value read by the last `fill` that found one.
    fn bytes(&self) -> &[u8];
}

impl ValueSlot for Option<Bytes> {
    fn fill(&mut self, engine: &dyn StorageEngine, start: &[u8], end: &[u8]) -> Result<bool> {
        *self = engine.first_value_in(Bound::Included(start), Bound::Included(end))?;
        Ok(self.is_some())
    }
    fn bytes(&self) -> &[u8] {
        self.as_deref().unwrap_or_default()
    }
}

impl ValueSlot for Vec<u8> {
    fn fill(&mut self, engine: &dyn StorageEngine, start: &[u8], end: &[u8]) -> Result<bool> {
        Ok(engine.first_value_into(Bound::Included(start), Bound::Included(end), self)?)
    }
    fn bytes(&self) -> &[u8] {
        self
    }
}

/// The state shared by the manager, its transactions and the GC thread.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) engine: Arc<dyn StorageEngine>,
    pub(crate) options: Options,
    next_id: AtomicU64,
    /// The last published commit timestamp: a new snapshot's value.
    published: AtomicU64,
    /// Set (after `Group::poisoned`) when the manager is poisoned: lets
    /// the common, healthy case check without the group mutex.
    poisoned: AtomicBool,
    /// Deleting batches garbage collection has begun: bumped before each
    /// (see "How a read avoids the snapshot registry" above).
    garbage_epoch: AtomicU64,
    commit: Mutex<CommitState>,
    group: Mutex<Group>,
    group_done: Condvar,
    /// Signalled when a commit joins the queue (a leader in its commit
    /// delay waits on it).
    group_joined: Condvar,
    pub(crate) active: Mutex<Active>,
    pub(crate) locks: LockManager,
    /// Set once any locking transaction began: from then on MVCC commits
    /// also take exclusive locks on what they write, so that they respect
    /// the shared locks of locking transactions.
    locking_used: AtomicBool,
    pub(crate) counters: Counters,
    /// Serializes collections; counts the passes run.
    pub(crate) gc_lock: Mutex<u64>,
    /// The spaced keys commits wrote since the collector last took them
    /// (see `gc`): a marked pass walks only these. Kept only when the
    /// background collector runs, so that nothing piles up without it.
    pub(crate) gc_marked: Mutex<Vec<Bytes>>,
    /// Where the next expiry cycle resumes, and whether the expirer may
    /// rest (see `expire`).
    pub(crate) expire_pass: Mutex<crate::expire::ExpirePass>,
}

/// What a transaction hands the pipeline at commit.
/// What [`Inner::register`] hands a beginning transaction.
pub(crate) struct Registered {
    pub(crate) id: u64,
    pub(crate) snapshot: u64,
    pub(crate) now_ms: u64,
    /// No other transaction was running with an older snapshot when this
    /// one took its own; every transaction that begins later takes one at
    /// least as new (snapshots only move forward), so none ever will be.
    pub(crate) oldest: bool,
}

pub(crate) struct CommitRequest {
    pub(crate) id: u64,
    /// Whether SSI tracks the transaction (see `Transaction::begin`).
    pub(crate) tracked: bool,
    pub(crate) snapshot: u64,
    pub(crate) isolation: Isolation,
    pub(crate) concurrency: Concurrency,
    /// The write buffer, handed over: it becomes the queued commit's
    /// write set as it is, without a copy.
    pub(crate) writes: Writes,
    /// Keys the transaction found no version of (see
    /// `Transaction::created`), ascending without repeats.
    pub(crate) created: Vec<Bytes>,
    pub(crate) lock_wait: LockWait,
}

impl Inner {
    pub(crate) fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    pub(crate) fn check_poisoned(&self) -> Result<()> {
        if !self.poisoned.load(Ordering::Acquire) {
            return Ok(());
        }
        match &self.group.lock().poisoned {
            Some(reason) => Err(Error::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Registers a running transaction at `snapshot` (`None`: the latest),
    /// and returns its id, snapshot, the clock reading it judges expiry at
    /// (read under the same lock garbage collection reads it under), and
    /// whether no other running transaction has an older snapshot (see
    /// [`Registered::oldest`]).
    pub(crate) fn register(&self, options: &TxnOptions) -> Result<Registered> {
        self.check_poisoned()?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut active = self.active.lock();
        let snapshot = match options.as_of {
            None => self.published(),
            Some(ts) => {
                let latest = self.published();
                if ts > latest {
                    return Err(Error::SnapshotInFuture {
                        requested: ts,
                        latest,
                    });
                }
                if ts < active.horizon {
                    return Err(Error::SnapshotTooOld {
                        requested: ts,
                        horizon: active.horizon,
                    });
                }
                ts
            }
        };
        let oldest = active
            .snapshots_oldest()
            .is_none_or(|other| other >= snapshot);
        *active.snapshots.entry(snapshot).or_default() += 1;
        let now_ms = self.options.clock.now_ms();
        *active.clocks.entry(now_ms).or_default() += 1;
        drop(active);
        self.counters.begun.fetch_add(1, Ordering::Relaxed);
        Ok(Registered {
            id,
            snapshot,
            now_ms,
            oldest,
        })
    }

    /// Registers a serializable transaction with the SSI tracker.
    pub(crate) fn register_ssi(&self, id: u64, snapshot: u64) -> Arc<ssi::Shared> {
        self.commit.lock().ssi.register(id, snapshot)
    }

    /// Called once by the first locking transaction: after it returns,
    /// every MVCC commit takes exclusive locks, and no MVCC commit that did
    /// not is still unpublished.
    pub(crate) fn enable_locking(&self) -> Result<()> {
        if self.locking_used.load(Ordering::Acquire) {
            return Ok(());
        }
        let last = {
            let commit = self.commit.lock();
            self.locking_used.store(true, Ordering::Release);
            commit.last_assigned
        };
        self.wait_published(last)
    }

    /// Waits until commit `ts` is published.
    fn wait_published(&self, ts: u64) -> Result<()> {
        let mut group = self.group.lock();
        loop {
            if group.published >= ts {
                return Ok(());
            }
            if let Some(reason) = &group.poisoned {
                return Err(Error::Poisoned {
                    reason: reason.clone(),
                });
            }
            self.group_done.wait(&mut group);
        }
    }

    /// Unregisters a transaction that ends (commit or rollback).
    pub(crate) fn unregister(
        &self,
        id: u64,
        snapshot: u64,
        now_ms: u64,
        ssi: bool,
        committed: bool,
    ) {
        {
            let mut active = self.active.lock();
            if let Some(n) = active.snapshots.get_mut(&snapshot) {
                *n -= 1;
                if *n == 0 {
                    active.snapshots.remove(&snapshot);
                }
            }
            if let Some(n) = active.clocks.get_mut(&now_ms) {
                *n -= 1;
                if *n == 0 {
                    active.clocks.remove(&now_ms);
                }
            }
        }
        if ssi && !committed {
            self.commit.lock().ssi.forget(id);
        }
        self.locks.release_all(id);
    }

    /// Writes a batch of garbage collection's deletes, after bumping
    /// `garbage_epoch` so that a registry-free read that may see any of
    /// them starts again (see the module docs).
    pub(crate) fn delete_garbage(&self, garbage: &WriteBatch) -> Result<()> {
        self.garbage_epoch.fetch_add(1, Ordering::SeqCst);
        self.engine.write_batch(garbage)?;
        Ok(())
    }

    /// The newest committed version of `key` in `space`, read without
    /// registering a snapshot (see the module docs), or `Some(None)` if it
    /// is a tombstone or expired. `None` if no attempt finished before a
    /// collection deleted again: the caller reads in a transaction then.
    fn read_latest(&self, space: keys::Keyspace, key: &[u8]) -> Result<Option<Option<Stored>>> {
        let mut slot = None;
        Ok(self.read_latest_into(space, key, &mut slot)?.map(|found| {
            found.and_then(|(start, deadline)| {
                slot.map(|mut value| {
                    bytes::Buf::advance(&mut value, start);
                    Stored { value, deadline }
                })
            })
        }))
    }

    /// [`Inner::read_latest`] into `slot`: when it finds a live version,
    /// where its user value starts in the slot's bytes and its deadline.
    fn read_latest_into(
        &self,
        space: keys::Keyspace,
        key: &[u8],
        slot: &mut impl ValueSlot,
    ) -> Result<Option<Option<ValueAt>>> {
        /// Attempts before giving up on the registry-free read.
        const ATTEMPTS: usize = 4;
        self.check_poisoned()?;
        for _ in 0..ATTEMPTS {
            let epoch = self.garbage_epoch.load(Ordering::SeqCst);
            let snapshot = self.published();
            // Every key in the range is a version of `key`, so the engine
            // hands out the value only; a damaged value is reported with
            // the range's start (the key at this snapshot) as its key.
            let found = keys::with_point_bounds(space, key, snapshot, |start, end| {
                let found = slot.fill(&*self.engine, start, end)?;
                Ok::<_, crate::Error>(found.then(|| keys::decode_header(start, slot.bytes())))
            })?;
            if self.garbage_epoch.load(Ordering::SeqCst) != epoch {
                continue;
            }
            let header = found.transpose()?.flatten();
            // The clock is read only for a value that can expire, after the
            // snapshot was taken (as `register` does), so after `epoch`.
            return Ok(Some(header.filter(|&(_, deadline)| {
                deadline.is_none() || !keys::expired(deadline, self.options.clock.now_ms())
            })));
        }
        Ok(None)
    }

    /// The oldest snapshot in use, or the last commit.
    pub(crate) fn watermark(&self) -> u64 {
        let active = self.active.lock();
        active
            .snapshots
            .keys()
            .next()
            .copied()
            .unwrap_or_else(|| self.published())
    }

    /// Validates, timestamps, writes and publishes a commit; returns its
    /// commit timestamp (the snapshot, for a transaction that wrote nothing).
    pub(crate) fn commit(&self, req: CommitRequest) -> Result<u64> {
        let mvcc = req.concurrency == Concurrency::Mvcc;
        let ssi = req.tracked;
        if req.writes.is_empty() && !ssi {
            return Ok(req.snapshot);
        }
        let mut locked = false;
        let ts = loop {
            if mvcc
                && !locked
                && !req.writes.is_empty()
                && self.locking_used.load(Ordering::Acquire)
            {
                for key in req.writes.keys() {
                    self.locks.acquire(
                        req.id,
                        crate::lock::Resource::Key(key),
                        crate::lock::Mode::Exclusive,
                        req.lock_wait,
                    )?;
                }
                locked = true;
            }
            let mut commit = self.commit.lock();
            if mvcc
                && !locked
                && !req.writes.is_empty()
                && self.locking_used.load(Ordering::Acquire)
            {
                continue; // Locking began meanwhile: take the locks first.
            }
            self.check_poisoned()?;
            // Each key is hashed once, for the check and the record, on
            // the one pass over the buffer that also sums the keys'
            // lengths for SSI (the check looks at the fingerprints only,
            // and finds its key again only to name it).
            let mut keys_len = 0;
            let fingerprints: Vec<u64> = req
                .writes
                .keys()
                .map(|k| {
                    keys_len += k.len();
                    commit.fingerprint(k)
                })
                .collect();
            if mvcc && req.isolation != Isolation::ReadCommitted {
                let conflict = fingerprints.iter().position(|fingerprint| {
                    commit
                        .last_writer
                        .get(fingerprint)
                        .is_some_and(|&ts| ts > req.snapshot)
                });
                if let Some(at) = conflict {
                    self.counters
                        .write_conflicts
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(Error::WriteConflict {
                        txn: req.id,
                        key: req
                            .writes
                            .keys()
                            .nth(at)
                            .map_or_else(String::new, |key| keys::describe_key(key)),
                    });
                }
            }
            let ts = commit.last_assigned + 1;
            if ssi {
                let writes =
                    ssi::WrittenKeys::copied_sized(req.writes.keys().map(|k| &k[..]), keys_len);
                if let Err(reason) = commit.ssi.commit(req.id, writes, ts) {
                    self.counters
                        .serialization_failures
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(Error::SerializationFailure {
                        txn: req.id,
                        reason,
                    });
                }
            }
            if req.writes.is_empty() {
                self.prune(&mut commit);
                return Ok(req.snapshot);
            }
            commit.last_assigned = ts;
            for fingerprint in fingerprints {
                commit.last_writer.insert(fingerprint, ts);
            }
            self.prune(&mut commit);
            // Enqueue under the commit mutex: queue order is ts order. The
            // buffer moves into the queue: no key or value is copied.
            self.group.lock().queue.push(Queued {
                ts,
                writes: req.writes,
                created: req.created,
            });
            self.group_joined.notify_one();
            break ts;
        };
        self.write_group(ts)?;
        Ok(ts)
    }

    /// Drops conflict bookkeeping no running transaction can need.
    fn prune(&self, commit: &mut CommitState) {
        let big_writers = commit.last_writer.len() > 2 * commit.last_writer_pruned + 1024;
        // Every tracked transaction costs each later serializable commit a
        // look at its reads and writes: keep the list short.
        if !big_writers && commit.ssi.len() < 16 {
            return;
        }
        let oldest = self.watermark();
        if big_writers {
            commit.last_writer.retain(|_, ts| *ts > oldest);
            commit.last_writer_pruned = commit.last_writer.len();
        }
        commit.ssi.prune(oldest);
    }

    /// Waits until commit `ts` is published, leading a group write if no
    /// one else is.
    fn write_group(&self, ts: u64) -> Result<()> {
        // The members a leader wrote, kept until this function returns:
        // declared before the guard, so dropped after it, and their write
        // buffers (every key and value of the group) are freed outside the
        // group mutex, which the next leader and every waiting member need.
        let mut _written: Vec<Queued> = Vec::new();
        let mut group = self.group.lock();
        loop {
            if group.published >= ts {
                return match group.refused.remove(&ts) {
                    Some(err) => Err(err.into()),
                    None => Ok(()),
                };
            }
            if let Some(reason) = &group.poisoned {
                return Err(Error::Poisoned {
                    reason: reason.clone(),
                });
            }
            if group.leader {
                self.group_done.wait(&mut group);
                continue;
            }
            group.leader = true;
            self.wait_for_cohort(&mut group);
            let members = std::mem::take(&mut group.queue);
            drop(group);
            let started = Instant::now();
            let result = self.write_members(&members);
            let took = started.elapsed();
            let mut refused = HashMap::new();
            let result = match result {
                Err(Error::Storage(err)) if is_invalid_input(&err) => {
                    // The engine refused the batch before writing any of
                    // it. Write the members one by one, so that only the
                    // invalid ones fail.
                    self.write_one_by_one(&members, &mut refused)
                }
                other => other,
            };
            group = self.group.lock();
            group.leader = false;
            group.last_size = members.len();
            group.last_write = took;
            match result {
                Ok(last) => {
                    group.refused.extend(refused);
                    group.published = last;
                    self.published.store(last, Ordering::Release);
                }
                Err(err) => {
                    tracing::error!(%err, "commit write failed; poisoning the transaction manager");
                    group.poisoned = Some(err.to_string());
                    self.poisoned.store(true, Ordering::Release);
                    self.group_done.notify_all();
                    return Err(err);
                }
            }
            self.group_done.notify_all();
            _written = members;
        }
    }

    /// The commit delay: a new leader waits, briefly, for the committers
    /// of the last group to queue again before it takes the queue.
    ///
    /// Without it, group commit catches only the commits that arrived
    /// while the previous group was being written. When a group of 50 is
    /// published, its 50 committers return, and the first of them to
    /// commit again finds no leader and an empty queue: it writes (and
    /// fsyncs) a group of one, while the other 49 queue behind it for the
    /// next. Groups alternate between tiny and large, and there are about
    /// twice as many fsyncs as needed. PostgreSQL's `commit_delay` (with
    /// `commit_siblings`) and Redis's one fsync per event-loop turn are
    /// the same remedy: let the cohort gather, then write once.
    ///
    /// The leader waits until the queue holds as many commits as the last
    /// group did, but never longer than the last group's write took (the
    /// delay can at most double a commit's latency), and only when that
    /// write was slow enough to be worth saving ([`MIN_DELAYED_WRITE`]: an
    /// fsync, not a memory append) and at most [`MAX_COMMIT_DELAY`]. A
    /// cohort that does not come back in time makes the next expectation
    /// smaller, so a shrinking load is not waited for twice.
    fn wait_for_cohort(&self, group: &mut parking_lot::MutexGuard<'_, Group>) {
        let expected = group.last_size;
        let delay = group.last_write.min(MAX_COMMIT_DELAY);
        if expected < 2 || group.queue.len() >= expected || delay < MIN_DELAYED_WRITE {
            return;
        }
        let deadline = Instant::now() + delay;
        while group.queue.len() < expected {
            if self.group_joined.wait_until(group, deadline).timed_out() {
                break;
            }
        }
    }

    /// Writes each member as its own batch, collecting the ones the engine
    /// refuses as invalid; any other failure is returned.
    fn write_one_by_one(
        &self,
        members: &[Queued],
        refused: &mut HashMap<u64, pydb_storage::Error>,
    ) -> Result<u64> {
        let mut last = self.published();
        for member in members {
            match self.write_members(std::slice::from_ref(member)) {
                Ok(_) => {}
                Err(Error::Storage(err)) if is_invalid_input(&err) => {
                    refused.insert(member.ts, err);
                }
                Err(err) => return Err(err),
            }
            last = member.ts;
        }
        Ok(last)
    }

    /// Writes a group's versions and the last commit timestamp as one
    /// atomic batch; returns the group's last timestamp.
    fn write_members(&self, members: &[Queued]) -> Result<u64> {
        let Some(last) = members.last().map(|m| m.ts) else {
            return Ok(self.published());
        };
        // Every written key's version, and the last commit timestamp. The
        // versions' values are encoded one after another into one buffer,
        // which the batch's values are slices of (see
        // `keys::put_version_value`); each key is a vector of its own,
        // handed over with the batch.
        let ops = members.iter().map(|m| m.writes.len()).sum::<usize>() + 1;
        let values_len = members
            .iter()
            .flat_map(|m| m.writes.values())
            .map(|w| keys::version_value_len(w.value.as_ref()))
            .sum();
        let mut values = Vec::with_capacity(values_len);
        for member in members {
            for write in member.writes.values() {
                keys::put_version_value(write.value.as_ref(), &mut values);
            }
        }
        let values = Bytes::from(values);
        let mut batch = WriteBatch::with_capacity(ops);
        let mut versions = 0;
        let mut with_deadline = 0;
        let mut at = 0;
        for member in members {
            for (key, write) in &member.writes {
                let value = write.value.as_ref();
                with_deadline += u64::from(value.is_some_and(|s| s.deadline.is_some()));
                let end = at + keys::version_value_len(value);
                batch.set(
                    keys::version_key_bytes(key, member.ts),
                    values.slice(at..end),
                );
                at = end;
                versions += 1;
            }
        }
        batch.set(keys::META_LAST_COMMIT, keys::encode_u64(last).to_vec());
        self.engine.write_batch_owned(batch)?;
        if with_deadline > 0 {
            self.counters
                .deadline_writes
                .fetch_add(with_deadline, Ordering::Release);
        }
        if self.options.gc_interval.is_some() {
            // Marked after the write, so that a collector that takes the
            // mark finds the versions in the engine.
            let mut marked = self.gc_marked.lock();
            // Copies, not shares: a buffered key is a share of a chunk
            // of its transaction's key arena, which a mark kept until the
            // next collection would keep whole.
            for member in members {
                marked.extend(member.gc_candidates().map(|k| Bytes::copy_from_slice(k)));
            }
        }
        self.counters.commit_groups.fetch_add(1, Ordering::Relaxed);
        self.counters
            .versions_written
            .fetch_add(versions, Ordering::Relaxed);
        Ok(last)
    }

    pub(crate) fn record_end(&self, committed: bool) {
        let counter = if committed {
            &self.counters.committed
        } else {
            &self.counters.rolled_back
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether the engine refused a batch for its contents (so it wrote
/// nothing), rather than failing to write it.
fn is_invalid_input(err: &pydb_storage::Error) -> bool {
    matches!(
        err,
        pydb_storage::Error::KeyTooLarge { .. }
            | pydb_storage::Error::ValueTooLarge { .. }
            | pydb_storage::Error::EmptyKey
    )
}

/// Transactions over a [`StorageEngine`]. Cheap to share: clone the `Arc`
/// or pass `&TxnManager` to threads.
#[derive(Debug)]
pub struct TxnManager {
    pub(crate) inner: Arc<Inner>,
    gc: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
    expirer: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl TxnManager {
    /// Opens the transaction layer over `engine`: reads the last commit
    /// timestamp and the garbage-collection horizon, and starts the
    /// background collector if the options ask for one.
    ///
    /// The engine must hold only what this layer wrote (or nothing).
    pub fn open(engine: Arc<dyn StorageEngine>, options: Options) -> Result<Self> {
        let read_meta = |key: &[u8]| -> Result<u64> {
            match engine.get(key)? {
                Some(v) => keys::decode_u64(key, &v),
                None => Ok(0),
            }
        };
        let last = read_meta(keys::META_LAST_COMMIT)?;
        let horizon = read_meta(keys::META_GC_HORIZON)?;
        let inner = Arc::new(Inner {
            engine,
            next_id: AtomicU64::new(1),
            published: AtomicU64::new(last),
            poisoned: AtomicBool::new(false),
            garbage_epoch: AtomicU64::new(0),
            commit: Mutex::new(CommitState {
                last_assigned: last,
                ..CommitState::default()
            }),
            group: Mutex::new(Group {
                published: last,
                ..Group::default()
            }),
            group_done: Condvar::new(),
            group_joined: Condvar::new(),
            active: Mutex::new(Active {
                snapshots: BTreeMap::new(),
                clocks: BTreeMap::new(),
                horizon,
            }),
            locks: LockManager::default(),
            locking_used: AtomicBool::new(false),
            counters: Counters::default(),
            gc_lock: Mutex::new(0),
            gc_marked: Mutex::new(Vec::new()),
            expire_pass: Mutex::new(crate::expire::ExpirePass::default()),
            options,
        });
        let gc = inner
            .options
            .gc_interval
            .map(|every| crate::gc::start(Arc::downgrade(&inner), every))
            .transpose()?;
        let expirer = inner
            .options
            .expire_interval
            .map(|every| crate::expire::start(Arc::downgrade(&inner), every))
            .transpose()?;
        Ok(Self { inner, gc, expirer })
    }

    /// Begins a read-write transaction at `isolation` under the manager's
    /// concurrency control.
    pub fn begin(&self, isolation: Isolation) -> Result<Transaction> {
        self.begin_with(TxnOptions::new(isolation))
    }

    /// Begins a read-only transaction at `isolation`.
    pub fn begin_read_only(&self, isolation: Isolation) -> Result<Transaction> {
        self.begin_with(TxnOptions::new(isolation).read_only())
    }

    /// Begins a read-only transaction that sees the database as of commit
    /// `ts`, as long as garbage collection kept its versions.
    pub fn begin_as_of(&self, ts: u64) -> Result<Transaction> {
        self.begin_with(TxnOptions::as_of(ts))
    }

    /// Begins a transaction with `options`.
    pub fn begin_with(&self, options: TxnOptions) -> Result<Transaction> {
        Transaction::begin(Arc::clone(&self.inner), options)
    }

    /// Runs `f` in a transaction and commits it, retrying (with a new
    /// transaction) up to [`Options::max_retries`] times when `f` or the
    /// commit fails with a retryable error.
    pub fn transaction<T>(
        &self,
        isolation: Isolation,
        f: impl FnMut(&mut Transaction) -> Result<T>,
    ) -> Result<T> {
        self.transaction_with(TxnOptions::new(isolation), f)
    }

    /// [`TxnManager::transaction`] with `options`.
    pub fn transaction_with<T>(
        &self,
        options: TxnOptions,
        mut f: impl FnMut(&mut Transaction) -> Result<T>,
    ) -> Result<T> {
        let mut attempt = 0;
        loop {
            let result = {
                let mut tx = self.begin_with(options.clone())?;
                f(&mut tx).and_then(|value| tx.commit().map(|_| value))
                // An uncommitted `tx` is rolled back here, before any wait.
            };
            match result {
                Err(err) if err.is_retryable() && attempt < self.inner.options.max_retries => {
                    attempt += 1;
                    // The winner of a conflict may be validated but not
                    // yet published: a snapshot taken now would not see
                    // it, and the retry would conflict with it again.
                    self.wait_for_pending_commits()?;
                    // Back off a little, more each time, so that the
                    // transactions that collided do not collide again.
                    std::thread::sleep(Duration::from_micros(50 << attempt.min(8)));
                }
                result => return result,
            }
        }
    }

    /// The keys in `range` (in the [`Keyspace::Kv`](crate::Keyspace::Kv)
    /// space) of the latest snapshot, as a stream that owns its read-only
    /// transaction: [`TxnManager::scan_in`].
    pub fn scan<K: AsRef<[u8]>>(&self, range: impl RangeBounds<K>) -> Result<TxnScan<'_>> {
        self.scan_in(crate::Keyspace::Kv, range)
    }

    /// The keys in `range` in `space` of the latest snapshot, as a stream
    /// that owns its read-only snapshot transaction: the snapshot stays
    /// registered (and its versions safe from garbage collection) until
    /// the stream is dropped. What `DBSIZE` and `SCAN` use, without copying
    /// the database.
    pub fn scan_in<K: AsRef<[u8]>>(
        &self,
        space: crate::Keyspace,
        range: impl RangeBounds<K>,
    ) -> Result<TxnScan<'_>> {
        let tx = self.begin_read_only(Isolation::Snapshot)?;
        let scan = tx.scan_with(self.inner.engine.as_ref(), space, range)?;
        Ok(scan.owning(tx))
    }

    /// Waits until every commit validated before this call is published
    /// (written by its group and visible to new snapshots).
    ///
    /// A write conflict is found against commits that passed validation,
    /// which may still be waiting for their group's engine write; a
    /// transaction retried at once would take a snapshot without them and
    /// conflict again. Retry loops call this first, so the retry sees the
    /// commit it lost to (and a `WATCH` check sees the key modified).
    pub fn wait_for_pending_commits(&self) -> Result<()> {
        let last = self.inner.commit.lock().last_assigned;
        self.inner.wait_published(last)
    }

    /// The value of `key` in the [`Keyspace::Kv`](crate::Keyspace::Kv)
    /// space as of the latest commit, or `None`: [`TxnManager::get_latest_in`].
    pub fn get_latest(&self, key: &[u8]) -> Result<Option<Bytes>> {
        self.get_latest_in(crate::Keyspace::Kv, key)
    }

    /// The value of `key` in `space` as of the latest commit, or `None`
    /// (also when it has expired): what a read-only snapshot transaction
    /// that reads one key and ends returns, without its cost. It registers
    /// no snapshot, takes no mutex, and is never tracked by SSI; see "How a
    /// read avoids the snapshot registry" in this module's docs for why it
    /// still never sees half a commit, an uncommitted write, or a version
    /// that garbage collection removed under it.
    ///
    /// A GET of the server and an autocommit point read of SQL are such
    /// reads. When the manager's concurrency is [`Concurrency::Locking`]
    /// it is a read-only transaction, which takes the key's shared lock.
    pub fn get_latest_in(&self, space: crate::Keyspace, key: &[u8]) -> Result<Option<Bytes>> {
        Ok(self
            .get_latest_with_deadline_in(space, key)?
            .map(|(value, _)| value))
    }

    /// [`TxnManager::get_latest_in`] with the value's expiry deadline (Unix
    /// ms; `None`: it never expires).
    pub fn get_latest_with_deadline_in(
        &self,
        space: crate::Keyspace,
        key: &[u8],
    ) -> Result<Option<(Bytes, Option<u64>)>> {
        if key.is_empty() {
            return Err(pydb_storage::Error::EmptyKey.into());
        }
        if self.inner.options.concurrency == Concurrency::Mvcc
            && let Some(stored) = self.inner.read_latest(space, key)?
        {
            return Ok(stored.map(|s| (s.value, s.deadline)));
        }
        let tx = self.begin_read_only(Isolation::Snapshot)?;
        tx.get_with_deadline_in(space, key)
    }

    /// [`TxnManager::get_latest_in`], the value copied into `buf`, a
    /// buffer the caller keeps: the value, borrowed from `buf`, or `None`.
    ///
    /// For a caller that decodes the value and drops it, again and again
    /// (an autocommit SQL point select decodes its row from it): a read
    /// that finds its buffer large enough allocates nothing, where
    /// `get_latest_in` allocates the value's `Bytes` and its caller frees
    /// it. Same answer, same guarantees.
    pub fn get_latest_into<'b>(
        &self,
        space: crate::Keyspace,
        key: &[u8],
        buf: &'b mut Vec<u8>,
    ) -> Result<Option<&'b [u8]>> {
        if key.is_empty() {
            return Err(pydb_storage::Error::EmptyKey.into());
        }
        if self.inner.options.concurrency == Concurrency::Mvcc
            && let Some(found) = self.inner.read_latest_into(space, key, buf)?
        {
            return Ok(found.map(|(start, _)| &buf[start..]));
        }
        let tx = self.begin_read_only(Isolation::Snapshot)?;
        buf.clear();
        Ok(match tx.get_with_deadline_in(space, key)? {
            Some((value, _)) => {
                buf.extend_from_slice(&value);
                Some(&buf[..])
            }
            None => None,
        })
    }

    /// The last published commit timestamp.
    pub fn last_commit(&self) -> u64 {
        self.inner.published()
    }

    /// Collects garbage now: removes every version no running transaction
    /// (and no [`Options::history`] read) can see.
    pub fn gc(&self) -> Result<crate::GcReport> {
        crate::gc::collect(&self.inner, crate::gc::Pass::Full)
    }

    /// Runs one active-expiry cycle now: looks at up to
    /// [`Options::expire_sample`] versions from where the last cycle
    /// stopped and deletes the expired keys among them, in one transaction.
    pub fn expire_cycle(&self) -> Result<crate::ExpireReport> {
        crate::expire::cycle(&self.inner)
    }

    /// The time now on the manager's clock (Unix ms).
    pub fn now_ms(&self) -> u64 {
        self.inner.options.clock.now_ms()
    }

    /// The manager's counters.
    pub fn stats(&self) -> TxnStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (active, horizon) = {
            let a = self.inner.active.lock();
            (a.snapshots.values().sum::<usize>() as u64, a.horizon)
        };
        TxnStats {
            begun: get(&c.begun),
            committed: get(&c.committed),
            rolled_back: get(&c.rolled_back),
            write_conflicts: get(&c.write_conflicts),
            serialization_failures: get(&c.serialization_failures),
            commit_groups: get(&c.commit_groups),
            versions_written: get(&c.versions_written),
            garbage_collected: get(&c.garbage_collected),
            collections: get(&c.collections),
            versions_at_last_collection: get(&c.versions_at_last_collection),
            active,
            last_commit: self.inner.published(),
            watermark: self.inner.watermark(),
            expired_keys: get(&c.expired_keys),
            expire_cycles: get(&c.expire_cycles),
            gc_horizon: horizon,
            locks_held: self.inner.locks.held_locks() as u64,
            ssi_tracked: self.inner.commit.lock().ssi.len() as u64,
        }
    }

    /// The engine underneath.
    pub fn engine(&self) -> &Arc<dyn StorageEngine> {
        &self.inner.engine
    }
}

impl Drop for TxnManager {
    fn drop(&mut self) {
        for (name, worker) in [
            ("garbage collector", self.gc.take()),
            ("expirer", self.expirer.take()),
        ] {
            if let Some((stop, thread)) = worker {
                drop(stop);
                if thread.join().is_err() {
                    tracing::warn!("the {name} thread panicked");
                }
            }
        }
    }
}

/// The GC thread's view of the manager: it must not keep it alive.
pub(crate) type WeakInner = Weak<Inner>;
