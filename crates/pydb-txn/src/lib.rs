//! # pydb-txn: transactions over any storage engine
//!
//! A [`TxnManager`] turns any [`StorageEngine`](pydb_storage::StorageEngine)
//! into a transactional store: [`TxnManager::begin`] gives a
//! [`Transaction`] with `get`, `set`, `delete`, `scan`, `commit` and
//! `rollback`, and [`TxnManager::transaction`] runs a closure and retries
//! it when another transaction got in the way.
//!
//! ```
//! # use std::sync::Arc;
//! # use pydb_storage::MemoryStorage;
//! use pydb_txn::{Isolation, Options, TxnManager};
//! let db = TxnManager::open(Arc::new(MemoryStorage::new()), Options::default())?;
//! db.transaction(Isolation::Serializable, |tx| {
//!     let balance = tx.get(b"alice")?.map_or(0, |v| v.len());
//!     tx.set(b"alice", &vec![b'$'; balance + 1])
//! })?;
//! # Ok::<(), pydb_txn::Error>(())
//! ```
//!
//! What follows is how it works. Read it top to bottom; each part names the
//! module that implements it.
//!
//! ## 1. Versions instead of values (`keys`)
//!
//! Multi-version concurrency control (MVCC) never overwrites a value.
//! Each commit gets a timestamp `ts` (1, 2, 3, ...) and writes a new
//! *version* of every key it changed, stored in the engine under
//! `key | inverted ts`; a delete writes a *tombstone* version. The engine
//! sorts the versions of a key newest first, so one forward scan starting
//! at `key | inverted S` lands on the newest version at or below `S`.
//!
//! ```text
//!  engine keys (sorted)         value
//!  "alice" @ 7                  tombstone   <- deleted by commit 7
//!  "alice" @ 5                  "$$"
//!  "alice" @ 2                  "$"
//!  "bob"   @ 6                  "$$$"
//! ```
//!
//! Keys live in a [`Keyspace`]: `get`/`set`/`delete`/`scan` use
//! [`Keyspace::Kv`] (the Redis-style commands), `get_in`/`set_in`/... name
//! one, e.g. [`Keyspace::Sql`] for the rows of the SQL layer. The space is
//! the first byte of the engine key, and every part of the layer keys its
//! bookkeeping by `(space, key)`, so the spaces never see each other.
//!
//! ## 2. The visibility rule (`transaction`, `manager`)
//!
//! A transaction takes a *snapshot*: the last published commit `S` when it
//! begins. **It sees the newest version of each key with `ts <= S`, unless
//! that version is a tombstone; and its own buffered writes over that.**
//! In the picture, a snapshot at 6 sees alice = "$$" and bob = "$$$"; one
//! at 7 sees no alice. A version with `ts > S` is invisible whether or not
//! its commit has finished, which is why a snapshot never sees half a
//! transaction.
//!
//! Commits are *published* in timestamp order: `S` only ever covers
//! commits whose whole batch is in the engine. Writes are buffered in the
//! transaction and reach the engine at commit in **one** atomic
//! `write_batch`, through group commit (see `manager`): after a crash,
//! a commit is all there or not there at all, and one that returned is
//! there.
//!
//! The levels differ in which snapshot a read uses and what commit checks:
//!
//! | level | reads see | commit fails when |
//! |---|---|---|
//! | [`Isolation::ReadCommitted`] | the latest commit, per read | never (last writer wins) |
//! | [`Isolation::Snapshot`] | the snapshot at begin | a concurrent commit wrote a key it writes (first committer wins) |
//! | [`Isolation::Serializable`] | the snapshot at begin | as snapshot, or a dangerous structure (section 3) |
//!
//! ## 3. Serializable snapshot isolation (`ssi`)
//!
//! Snapshot isolation allows *write skew*: two doctors on call each read
//! "two doctors on call", each take themselves off, both commit, and nobody
//! is on call. Neither wrote what the other wrote, so first-committer-wins
//! says nothing. What connects them are two *rw-antidependencies*: T1 read
//! a key T2 then overwrote (T1 must come before T2 in any serial order) and
//! vice versa. A cycle of dependencies means no serial order exists.
//!
//! Cahill's theorem: every such cycle under snapshot isolation contains two
//! consecutive rw-antidependencies `T1 -> T2 -> T3` between concurrent
//! transactions, the *dangerous structure*, with T2 the *pivot*; Ports and
//! Grittner add that T3 commits first. So each serializable transaction
//! records what it read (keys, found or not, and every scanned range, even
//! an empty one: a later insert into that range is a write it "read"), and
//! at commit the manager computes its rw-edges with concurrent
//! transactions and aborts when it would complete a dangerous structure
//! (the rules are in `ssi`). This aborts some transactions that would
//! have been fine (false positives) but never lets a cycle through.
//!
//! ## 4. Locking instead of versions (`lock`)
//!
//! [`Concurrency::Locking`] is the older way: strict two-phase locking. A
//! read takes a shared lock on its key, a scan a shared lock on its range
//! (so that nobody can insert into it: no phantoms), a write an exclusive
//! lock, and all locks are held to commit or rollback. Conflicting
//! requests wait; a cycle in the waits-for graph is a deadlock, and the
//! youngest transaction in it is aborted. Locking transactions read the
//! latest commit (their locks keep it from changing) and commit through
//! the same pipeline as MVCC, so both kinds can share a database. Locking
//! is always serializable, whatever the isolation level asks.
//!
//! ## 5. Garbage (`gc`)
//!
//! Old versions pile up. The *watermark* is the oldest snapshot still in
//! use; any version hidden from a snapshot at the watermark by a newer one
//! is hidden from every snapshot that can still exist, and is deleted,
//! in the background and on demand ([`TxnManager::gc`]).
//!
//! ## 6. Expiry (`clock`, `expire`)
//!
//! A value may carry a deadline (Redis's `EXPIRE`), stored with it in the
//! version value (`keys`), so every engine keeps it through restarts and
//! compaction. Each transaction reads the [`Clock`] once at begin and
//! hides values whose deadline has passed (*lazy* expiry: invisible at
//! once). A background *expirer* walks the keys a bounded slice at a time
//! and deletes expired ones with ordinary transactions (*active* expiry),
//! and garbage collection drops an expired version as it drops a
//! tombstone once no running transaction began before its deadline; then
//! the engine's compaction reclaims the bytes.
//!
//! ## What the engine would ideally offer
//!
//! The layer needs only `write_batch` (atomic) and ordered forward scans,
//! which every engine has. A point read is a one-item scan; an engine
//! `seek`/`first_in_range` would make it cheaper (and let a scan jump over
//! the old versions of a key instead of reading past them), and a reverse
//! scan would allow descending transactional scans.

mod arena;
mod buffered;
mod clock;
mod error;
mod expire;
mod gc;
mod keys;
mod lock;
mod manager;
mod ssi;
mod transaction;

pub use arena::ByteArena;
pub use clock::{Clock, ClockHandle, ManualClock, SystemClock};
pub use error::{Error, Result};
pub use expire::ExpireReport;
pub use gc::{FULL_PASS_EVERY, GcReport};
pub use keys::{Keyspace, SpacedKey, decode_version_key};
pub use lock::LockWait;
pub use manager::{Concurrency, Isolation, Options, TxnManager, TxnOptions, TxnStats};
pub use transaction::{Transaction, TxnScan};
