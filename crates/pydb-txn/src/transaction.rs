//! A transaction: reads at a snapshot (or under locks), writes buffered
//! until commit.
//!
//! Writes go into a sorted buffer in the transaction, not into the engine.
//! Reads look in the buffer first (a transaction sees its own writes), then
//! in the engine at the transaction's read timestamp. Nothing reaches the
//! engine before commit, so a rollback is just dropping the buffer, and no
//! other transaction can ever see uncommitted data.
//!
//! A value may carry an expiry deadline (see `keys` and `clock`). The
//! transaction reads the clock once, at begin, and every read hides a
//! value whose deadline is before that instant: an expired key is gone at
//! once for `get`, `scan` and everything built on them, whether or not
//! anything has deleted it yet.

use std::collections::BTreeMap;
use std::ops::RangeBounds;
use std::sync::Arc;

use bytes::Bytes;
use pydb_storage::KeyRange;

use crate::error::{Error, Result};
use crate::keys::{self, Stored};
use crate::lock::{LockWait, Mode, Resource};
use crate::manager::{CommitRequest, Concurrency, Inner, Isolation, TxnOptions};
use crate::ssi;

/// A transaction. Commit it with [`Transaction::commit`]; dropping it
/// uncommitted rolls it back.
#[derive(Debug)]
pub struct Transaction {
    inner: Arc<Inner>,
    id: u64,
    isolation: Isolation,
    concurrency: Concurrency,
    read_only: bool,
    snapshot: u64,
    lock_wait: LockWait,
    /// The clock reading expiry is judged against (Unix ms, at begin).
    now_ms: u64,
    /// Buffered writes: `None` is a delete.
    writes: BTreeMap<Bytes, Option<Stored>>,
    /// The SSI read set, for a serializable MVCC transaction.
    ssi: Option<Arc<ssi::Shared>>,
    done: bool,
}

impl Transaction {
    pub(crate) fn begin(inner: Arc<Inner>, options: TxnOptions) -> Result<Self> {
        let historical = options.as_of.is_some();
        // An "as of" read is a plain snapshot read: no locks, no tracking.
        let (isolation, concurrency) = if historical {
            (Isolation::Snapshot, Concurrency::Mvcc)
        } else {
            (
                options.isolation,
                options.concurrency.unwrap_or(inner.options.concurrency),
            )
        };
        if concurrency == Concurrency::Locking {
            inner.enable_locking()?;
        }
        let (id, snapshot, now_ms) = inner.register(&options)?;
        let ssi = (concurrency == Concurrency::Mvcc && isolation == Isolation::Serializable)
            .then(|| inner.register_ssi(id, snapshot));
        let lock_wait = options.lock_wait.unwrap_or(inner.options.lock_wait);
        Ok(Self {
            inner,
            id,
            isolation,
            concurrency,
            read_only: options.read_only || historical,
            snapshot,
            lock_wait,
            now_ms,
            writes: BTreeMap::new(),
            ssi,
            done: false,
        })
    }

    /// The transaction's id: ids grow with begin order (a deadlock aborts
    /// the highest, the youngest).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The commit timestamp the transaction's snapshot was taken at.
    pub fn snapshot(&self) -> u64 {
        self.snapshot
    }

    /// The instant (Unix milliseconds) this transaction judges expiry
    /// against: the manager's clock when it began.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// The isolation level.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// The concurrency control.
    pub fn concurrency(&self) -> Concurrency {
        self.concurrency
    }

    /// Whether writes are refused.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The timestamp reads see: the snapshot, or for read committed and
    /// locking, the latest commit.
    fn read_ts(&self) -> u64 {
        match (self.concurrency, self.isolation) {
            (Concurrency::Locking, _) | (Concurrency::Mvcc, Isolation::ReadCommitted) => {
                self.inner.published()
            }
            _ => self.snapshot,
        }
    }

    /// Fails if SSI doomed this transaction.
    fn check(&self) -> Result<()> {
        if let Some(reason) = self.ssi.as_ref().and_then(|s| s.doomed()) {
            return Err(Error::SerializationFailure {
                txn: self.id,
                reason,
            });
        }
        Ok(())
    }

    fn lock(&self, resource: Resource<'_>, mode: Mode) -> Result<()> {
        if self.concurrency == Concurrency::Locking {
            self.inner
                .locks
                .acquire(self.id, resource, mode, self.lock_wait)?;
        }
        Ok(())
    }

    /// The value of `key`, or `None` (also when it has expired).
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        Ok(self.get_with_deadline(key)?.map(|(value, _)| value))
    }

    /// The value of `key` and its expiry deadline (Unix ms; `None`: it
    /// never expires), or `None` if it has no value or has expired.
    pub fn get_with_deadline(&self, key: &[u8]) -> Result<Option<(Bytes, Option<u64>)>> {
        Ok(self
            .visible_stored(key)?
            .filter(|s| !s.is_expired(self.now_ms))
            .map(|s| (s.value, s.deadline)))
    }

    /// The version of `key` this transaction sees, expired or not.
    pub(crate) fn visible_stored(&self, key: &[u8]) -> Result<Option<Stored>> {
        self.check()?;
        if key.is_empty() {
            return Err(pydb_storage::Error::EmptyKey.into());
        }
        if let Some(value) = self.writes.get(key) {
            return Ok(value.clone());
        }
        self.lock(Resource::Key(key), Mode::Shared)?;
        if let Some(ssi) = &self.ssi {
            ssi.read_key(key);
        }
        let Some(item) = self
            .inner
            .engine
            .scan(keys::visible_range(key, self.read_ts()))?
            .next()
        else {
            return Ok(None);
        };
        let (engine_key, value) = item?;
        keys::decode_stored(&engine_key, &value)
    }

    /// [`Transaction::get`] for a key the transaction is about to write.
    /// Under locking it takes the exclusive lock right away instead of a
    /// shared one, so two read-modify-writes of one key queue up instead of
    /// deadlocking on the upgrade (SQL's `SELECT ... FOR UPDATE`). Under
    /// MVCC it is a plain `get`: the write-write check at commit already
    /// guards a read-modify-write.
    pub fn get_for_update(&self, key: &[u8]) -> Result<Option<Bytes>> {
        if self.concurrency == Concurrency::Locking && !key.is_empty() {
            self.check()?;
            self.lock(Resource::Key(key), Mode::Exclusive)?;
        }
        self.get(key)
    }

    /// The commit timestamp of the newest version of `key` this
    /// transaction sees (a value or a delete), or `None` if it sees none;
    /// for a key it wrote itself, `Some(u64::MAX)`. Counts as a read of
    /// `key` (tracked by SSI, locked under locking).
    ///
    /// This is Redis's `WATCH`: remember `last_commit()` at `WATCH`, and at
    /// `EXEC` a key was modified since if its `last_modified` is above it.
    /// Keep a transaction open from `WATCH` to `EXEC` so that garbage
    /// collection cannot remove a delete in between.
    pub fn last_modified(&self, key: &[u8]) -> Result<Option<u64>> {
        self.check()?;
        if key.is_empty() {
            return Err(pydb_storage::Error::EmptyKey.into());
        }
        if self.writes.contains_key(key) {
            return Ok(Some(u64::MAX));
        }
        self.lock(Resource::Key(key), Mode::Shared)?;
        if let Some(ssi) = &self.ssi {
            ssi.read_key(key);
        }
        let Some(item) = self
            .inner
            .engine
            .scan(keys::visible_range(key, self.read_ts()))?
            .next()
        else {
            return Ok(None);
        };
        let (engine_key, _) = item?;
        Ok(Some(keys::decode_version_key(&engine_key)?.1))
    }

    /// The keys in `range` with their values, ascending (expired keys
    /// left out).
    pub fn scan<K: AsRef<[u8]>>(&self, range: impl RangeBounds<K>) -> Result<Vec<(Bytes, Bytes)>> {
        Ok(self
            .scan_with_deadlines(range)?
            .into_iter()
            .map(|(key, value, _)| (key, value))
            .collect())
    }

    /// [`Transaction::scan`], with each key's expiry deadline (Unix ms;
    /// `None`: never).
    pub fn scan_with_deadlines<K: AsRef<[u8]>>(
        &self,
        range: impl RangeBounds<K>,
    ) -> Result<Vec<(Bytes, Bytes, Option<u64>)>> {
        self.check()?;
        let start = range.start_bound().map(|k| k.as_ref());
        let end = range.end_bound().map(|k| k.as_ref());
        let owned = KeyRange {
            start: start.map(Bytes::copy_from_slice),
            end: end.map(Bytes::copy_from_slice),
        };
        self.lock(Resource::Range(&owned), Mode::Shared)?;
        if let Some(ssi) = &self.ssi {
            ssi.read_range(start, end);
        }
        if keys::range_is_empty(start, end) {
            return Ok(Vec::new());
        }
        let ts = self.read_ts();
        let mut found = BTreeMap::new();
        let mut current: Option<Bytes> = None;
        let mut decided = false;
        for item in self.inner.engine.scan(keys::version_range(start, end))? {
            let (engine_key, value) = item?;
            let (key, version_ts) = keys::decode_version_key(&engine_key)?;
            if current.as_ref() != Some(&key) {
                current = Some(key.clone());
                decided = false;
            }
            if decided || version_ts > ts {
                continue;
            }
            decided = true;
            if let Some(stored) = keys::decode_stored(&engine_key, &value)?
                && !stored.is_expired(self.now_ms)
            {
                found.insert(key, stored);
            }
        }
        for (key, value) in self.writes.range::<[u8], _>((start, end)) {
            match value {
                Some(s) if !s.is_expired(self.now_ms) => found.insert(key.clone(), s.clone()),
                _ => found.remove(key),
            };
        }
        Ok(found
            .into_iter()
            .map(|(key, s)| (key, s.value, s.deadline))
            .collect())
    }

    fn write(&mut self, key: &[u8], value: Option<Stored>) -> Result<()> {
        self.check()?;
        if self.read_only {
            return Err(Error::ReadOnly { txn: self.id });
        }
        if key.is_empty() {
            return Err(pydb_storage::Error::EmptyKey.into());
        }
        self.lock(Resource::Key(key), Mode::Exclusive)?;
        self.writes.insert(Bytes::copy_from_slice(key), value);
        Ok(())
    }

    /// Sets `key` to `value` (visible to others once committed). The value
    /// never expires: a deadline the key had is gone, as with Redis's `SET`.
    pub fn set(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.set_with_deadline(key, value, None)
    }

    /// Sets `key` to `value`, expiring after `deadline` (Unix ms; `None`:
    /// never). A deadline already past is stored as it is: the value is
    /// invisible at once, and collected like any expired value.
    pub fn set_with_deadline(
        &mut self,
        key: &[u8],
        value: &[u8],
        deadline: Option<u64>,
    ) -> Result<()> {
        let stored = Stored {
            value: Bytes::copy_from_slice(value),
            deadline,
        };
        self.write(key, Some(stored))
    }

    /// Deletes `key` (a tombstone version, once committed). Deleting a
    /// missing key is not an error, and does not read it.
    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.write(key, None)
    }

    /// Commits: returns the commit timestamp (the snapshot for a
    /// transaction that wrote nothing). On error the transaction is rolled
    /// back; a retryable error means running it again may succeed.
    pub fn commit(mut self) -> Result<u64> {
        let result = self.check().and_then(|()| {
            self.inner.commit(CommitRequest {
                id: self.id,
                snapshot: self.snapshot,
                isolation: self.isolation,
                concurrency: self.concurrency,
                writes: &self.writes,
                lock_wait: self.lock_wait,
            })
        });
        self.finish(result.is_ok());
        result
    }

    /// Rolls back: nothing of the transaction was ever visible.
    pub fn rollback(mut self) {
        self.finish(false);
    }

    fn finish(&mut self, committed: bool) {
        if self.done {
            return;
        }
        self.done = true;
        self.inner.unregister(
            self.id,
            self.snapshot,
            self.now_ms,
            self.ssi.is_some(),
            committed,
        );
        self.inner.record_end(committed);
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        self.finish(false);
    }
}
