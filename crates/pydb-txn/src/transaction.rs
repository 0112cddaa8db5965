//! A transaction: reads at a snapshot (or under locks), writes buffered
//! until commit.
//!
//! Writes go into a sorted buffer in the transaction, not into the engine.
//! Reads look in the buffer first (a transaction sees its own writes), then
//! in the engine at the transaction's read timestamp. Nothing reaches the
//! engine before commit, so a rollback is just dropping the buffer, and no
//! other transaction can ever see uncommitted data.

use std::collections::BTreeMap;
use std::ops::RangeBounds;
use std::sync::Arc;

use bytes::Bytes;
use pydb_storage::KeyRange;

use crate::error::{Error, Result};
use crate::keys;
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
    /// Buffered writes: `None` is a delete.
    writes: BTreeMap<Bytes, Option<Bytes>>,
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
        let (id, snapshot) = inner.register(&options)?;
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

    /// The value of `key`, or `None`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
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
        keys::decode_value(&engine_key, &value)
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

    /// The keys in `range` with their values, ascending.
    pub fn scan<K: AsRef<[u8]>>(&self, range: impl RangeBounds<K>) -> Result<Vec<(Bytes, Bytes)>> {
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
            if let Some(value) = keys::decode_value(&engine_key, &value)? {
                found.insert(key, value);
            }
        }
        for (key, value) in self.writes.range::<[u8], _>((start, end)) {
            match value {
                Some(v) => found.insert(key.clone(), v.clone()),
                None => found.remove(key),
            };
        }
        Ok(found.into_iter().collect())
    }

    fn write(&mut self, key: &[u8], value: Option<Bytes>) -> Result<()> {
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

    /// Sets `key` to `value` (visible to others once committed).
    pub fn set(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.write(key, Some(Bytes::copy_from_slice(value)))
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
        self.inner
            .unregister(self.id, self.snapshot, self.ssi.is_some(), committed);
        self.inner.record_end(committed);
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        self.finish(false);
    }
}
