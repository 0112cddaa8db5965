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

use std::collections::btree_map;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use bytes::Bytes;

use crate::arena::ByteArena;
use crate::buffered::{BufferedKey, Writes};
use crate::error::{Error, Result};
use crate::keys::SpacedKey;
use crate::keys::{self, Keyspace, Stored};
use crate::lock::{LockWait, Mode, Resource};
use crate::manager::{CommitRequest, Concurrency, Inner, Isolation, Registered, TxnOptions};
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
    /// Buffered writes, by spaced key (`space | key`), abbreviated for
    /// cheap comparisons (see `buffered`).
    writes: Writes,
    /// Where the write buffer's keys are kept: each a share of a chunk
    /// (see `arena`), where a vector of its own cost an allocation when
    /// it was written and a free when the commit dropped the buffer.
    keys: ByteArena,
    /// The SSI read set, for a serializable MVCC transaction.
    ssi: Option<Arc<ssi::Shared>>,
    /// Spaced keys this transaction read and found no version of at all,
    /// in a mode whose commit checks write-write conflicts: if it writes
    /// one and commits, its version is the key's only one, which garbage
    /// collection need not walk (see `gc`). Behind a mutex because reads
    /// take `&self`. A list in read order, not a set: an insert reads its
    /// key once, and a push costs far less than an ordered-set insert;
    /// the commit sorts it once (see [`Transaction::commit`]). A key
    /// the transaction writes in the same call that read it (an insert, a
    /// dependent) is not listed here: its buffered [`Write`] says so
    /// itself.
    created: parking_lot::Mutex<Vec<Bytes>>,
    /// The spaced key the last [`Transaction::insert_owned_in`] wrote as
    /// its first version (empty when the last one did not): the owner
    /// [`Transaction::set_dependent_owned_in`] checks its dependents by.
    /// A buffer reused from insert to insert, not a share of the key's
    /// `Bytes`: no allocation or reference count per row.
    inserted: Vec<u8>,
    /// Where the engine's last uniqueness read of
    /// [`Transaction::insert_spaced`] landed: the next row's read, of a
    /// key near it (a bulk insert's keys ascend), starts there (see
    /// `StorageEngine::first_value_in_hinted`).
    read_hint: pydb_storage::ReadHint,
    done: bool,
}

/// One buffered write of a [`Transaction`], handed to the commit as it is.
#[derive(Debug, Clone)]
pub(crate) struct Write {
    /// The value, or `None` for a delete.
    pub(crate) value: Option<Stored>,
    /// The commit's version of the key will be its first as far as
    /// garbage collection goes, so the commit need not mark it (see
    /// "Which keys a pass walks" in `gc`): the key was inserted by
    /// [`Transaction::insert_owned_in`] where the snapshot saw no version
    /// of it at all, or written as the dependent of such a key
    /// ([`Transaction::set_dependent_owned_in`]), in a mode whose commit
    /// checks write-write conflicts. Carried by the entry itself, where a
    /// list of created keys had to be sorted and a set of dependents
    /// hashed, per row, to be merged with the buffer at commit. (Keys
    /// found absent by a plain read and written later are still listed in
    /// `Transaction::created`.)
    pub(crate) first: bool,
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
        let Registered {
            id,
            snapshot,
            now_ms,
            oldest,
        } = inner.register(&options)?;
        // A read-only transaction whose snapshot no running transaction's
        // is older than needs no SSI tracking (PostgreSQL's "safe
        // snapshot"). It writes nothing, so it can only be the first
        // transaction T1 of a dangerous structure T1 -rw-> T2 -rw-> T3, and
        // Ports and Grittner show that such a structure can close a cycle
        // only if T3 committed before T1's snapshot, while T2, concurrent
        // with T3, did not see it: T2's snapshot would be older than T1's.
        // No such T2 runs now, and none can begin later.
        let read_only = options.read_only || historical;
        let safe = read_only && oldest;
        let ssi =
            (concurrency == Concurrency::Mvcc && isolation == Isolation::Serializable && !safe)
                .then(|| inner.register_ssi(id, snapshot));
        let lock_wait = options.lock_wait.unwrap_or(inner.options.lock_wait);
        Ok(Self {
            inner,
            id,
            isolation,
            concurrency,
            read_only,
            snapshot,
            lock_wait,
            now_ms,
            writes: Writes::new(),
            keys: ByteArena::new(),
            ssi,
            created: parking_lot::Mutex::new(Vec::new()),
            inserted: Vec::new(),
            read_hint: pydb_storage::ReadHint::default(),
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

    /// Whether serializable snapshot isolation records this transaction's
    /// reads: a serializable MVCC transaction, unless it is read-only and
    /// began with a safe snapshot (see `ssi`). A read that no one tracks
    /// or locks depends only on the snapshot, so a caller may answer it
    /// from what an earlier transaction at the same snapshot read.
    pub fn is_tracked(&self) -> bool {
        self.ssi.is_some()
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

    /// The value of `key` in the [`Keyspace::Kv`] space, or `None`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        self.get_in(Keyspace::Kv, key)
    }

    /// The value of `key` in `space`, or `None` (also when it has expired).
    pub fn get_in(&self, space: Keyspace, key: &[u8]) -> Result<Option<Bytes>> {
        Ok(self
            .get_with_deadline_in(space, key)?
            .map(|(value, _)| value))
    }

    /// The value of `key` (in the [`Keyspace::Kv`] space) and its expiry
    /// deadline (Unix ms; `None`: it never expires), or `None` if it has no
    /// value or has expired.
    pub fn get_with_deadline(&self, key: &[u8]) -> Result<Option<(Bytes, Option<u64>)>> {
        self.get_with_deadline_in(Keyspace::Kv, key)
    }

    /// [`Transaction::get_with_deadline`] in `space`.
    pub fn get_with_deadline_in(
        &self,
        space: Keyspace,
        key: &[u8],
    ) -> Result<Option<(Bytes, Option<u64>)>> {
        Ok(self
            .visible_stored(space, key)?
            .filter(|s| !s.is_expired(self.now_ms))
            .map(|s| (s.value, s.deadline)))
    }

    /// The version of `key` in `space` this transaction sees, expired or not.
    pub(crate) fn visible_stored(&self, space: Keyspace, key: &[u8]) -> Result<Option<Stored>> {
        self.check()?;
        let key = Self::spaced(space, key)?;
        if let Some(write) = self.writes.get(&key[..]) {
            return Ok(write.value.clone());
        }
        self.lock(Resource::Key(&key), Mode::Shared)?;
        if let Some(ssi) = &self.ssi {
            ssi.read_key(&key);
        }
        let Some((engine_key, value)) = self
            .inner
            .engine
            .first(keys::visible_range(&key, self.read_ts()))?
        else {
            // No version at or below the snapshot, and the write-write
            // check refuses this transaction's commit if one appears
            // above it: a write of this key would be its first version.
            if self.checks_write_conflicts() && !self.read_only {
                self.created.lock().push(key);
            }
            return Ok(None);
        };
        keys::decode_stored(&engine_key, &value)
    }

    /// Whether the commit refuses this transaction when another one
    /// committed a key it writes after its snapshot (MVCC, above read
    /// committed; see `Inner::commit`).
    fn checks_write_conflicts(&self) -> bool {
        self.concurrency == Concurrency::Mvcc && self.isolation != Isolation::ReadCommitted
    }

    /// [`Transaction::get`] for a key the transaction is about to write.
    /// Under locking it takes the exclusive lock right away instead of a
    /// shared one, so two read-modify-writes of one key queue up instead of
    /// deadlocking on the upgrade (SQL's `SELECT ... FOR UPDATE`). Under
    /// MVCC it is a plain `get`: the write-write check at commit already
    /// guards a read-modify-write.
    pub fn get_for_update(&self, key: &[u8]) -> Result<Option<Bytes>> {
        self.get_for_update_in(Keyspace::Kv, key)
    }

    /// [`Transaction::get_for_update`] of `key` in `space`.
    pub fn get_for_update_in(&self, space: Keyspace, key: &[u8]) -> Result<Option<Bytes>> {
        if self.concurrency == Concurrency::Locking && !key.is_empty() {
            self.check()?;
            self.lock(Resource::Key(&keys::spaced(space, key)), Mode::Exclusive)?;
        }
        self.get_in(space, key)
    }

    /// The commit timestamp of the newest version of `key` (in the
    /// [`Keyspace::Kv`] space) this transaction sees (a value or a delete),
    /// or `None` if it sees none; for a key it wrote itself,
    /// `Some(u64::MAX)`. Counts as a read of `key` (tracked by SSI, locked
    /// under locking).
    ///
    /// This is Redis's `WATCH`: remember `last_commit()` at `WATCH`, and at
    /// `EXEC` a key was modified since if its `last_modified` is above it.
    /// Keep a transaction open from `WATCH` to `EXEC` so that garbage
    /// collection cannot remove a delete in between.
    pub fn last_modified(&self, key: &[u8]) -> Result<Option<u64>> {
        self.last_modified_in(Keyspace::Kv, key)
    }

    /// [`Transaction::last_modified`] of `key` in `space`.
    pub fn last_modified_in(&self, space: Keyspace, key: &[u8]) -> Result<Option<u64>> {
        self.check()?;
        let key = Self::spaced(space, key)?;
        if self.writes.contains_key(&key[..]) {
            return Ok(Some(u64::MAX));
        }
        self.lock(Resource::Key(&key), Mode::Shared)?;
        if let Some(ssi) = &self.ssi {
            ssi.read_key(&key);
        }
        let Some((engine_key, _)) = self
            .inner
            .engine
            .first(keys::visible_range(&key, self.read_ts()))?
        else {
            return Ok(None);
        };
        Ok(Some(keys::decode_spaced(&engine_key)?.1))
    }

    /// The keys in `range` (in the [`Keyspace::Kv`] space) with their
    /// values, ascending, as a stream: see [`TxnScan`].
    pub fn scan<K: AsRef<[u8]>>(&self, range: impl RangeBounds<K>) -> Result<TxnScan<'_>> {
        self.scan_in(Keyspace::Kv, range)
    }

    /// The keys in `range` in `space` with their values, ascending, as a
    /// stream: see [`TxnScan`].
    ///
    /// The whole range counts as read at once, before the first item: a
    /// serializable transaction records it for SSI (even if nothing is in
    /// it, or the stream is dropped early), and a locking one takes its
    /// shared range lock here.
    pub fn scan_in<K: AsRef<[u8]>>(
        &self,
        space: Keyspace,
        range: impl RangeBounds<K>,
    ) -> Result<TxnScan<'_>> {
        self.scan_with(self.inner.engine.as_ref(), space, range)
    }

    /// [`Transaction::scan_in`] over `engine`, which must be this
    /// transaction's engine: lets a [`TxnScan`] borrow the engine from the
    /// manager instead of from the transaction, and own the transaction.
    pub(crate) fn scan_with<'e, K: AsRef<[u8]>>(
        &self,
        engine: &'e dyn pydb_storage::StorageEngine,
        space: Keyspace,
        range: impl RangeBounds<K>,
    ) -> Result<TxnScan<'e>> {
        self.check()?;
        let start = range.start_bound().map(|k| k.as_ref());
        let end = range.end_bound().map(|k| k.as_ref());
        let spaced = keys::spaced_range(space, start, end);
        self.lock(Resource::Range(&spaced), Mode::Shared)?;
        if let Some(ssi) = &self.ssi {
            ssi.read_range(spaced.clone());
        }
        if keys::range_is_empty(start, end) {
            return Ok(TxnScan::empty());
        }
        // The own writes are copied (cheap: `Bytes` clones share the
        // bytes), so that the stream does not borrow the write buffer.
        let own: Vec<(Bytes, Option<Stored>)> = self
            .writes
            .range::<[u8], _>((
                spaced.start.as_ref().map(|k| &k[..]),
                spaced.end.as_ref().map(|k| &k[..]),
            ))
            .map(|(k, w)| (k.bytes().clone(), w.value.clone()))
            .collect();
        Ok(TxnScan::new(
            Some(Versions::new(engine, keys::version_range(&spaced))),
            self.read_ts(),
            self.now_ms,
            own,
        ))
    }

    /// [`Transaction::scan`] (in the [`Keyspace::Kv`] space), with each
    /// key's expiry deadline (Unix ms; `None`: never), collected.
    pub fn scan_with_deadlines<K: AsRef<[u8]>>(
        &self,
        range: impl RangeBounds<K>,
    ) -> Result<Vec<(Bytes, Bytes, Option<u64>)>> {
        let mut scan = self.scan(range)?;
        std::iter::from_fn(|| scan.next_with_deadline()).collect()
    }

    /// The spaced key of a user key; refuses the empty key.
    fn spaced(space: Keyspace, key: &[u8]) -> Result<Bytes> {
        if key.is_empty() {
            return Err(pydb_storage::Error::EmptyKey.into());
        }
        Ok(keys::spaced(space, key))
    }

    fn write(&mut self, space: Keyspace, key: &[u8], value: Option<Stored>) -> Result<()> {
        self.check()?;
        if self.read_only {
            return Err(Error::ReadOnly { txn: self.id });
        }
        if key.is_empty() {
            return Err(pydb_storage::Error::EmptyKey.into());
        }
        let key = self.keys.copy_parts(&[&[space.prefix()], key]);
        self.write_spaced(key, value)
    }

    /// [`Transaction::write`] of a key already spaced and checked non-empty.
    fn write_spaced(&mut self, key: Bytes, value: Option<Stored>) -> Result<()> {
        self.lock(Resource::Key(&key), Mode::Exclusive)?;
        self.buffer(key, value, false);
        Ok(())
    }

    /// Buffers a write of `key`; `first` says it is the key's first
    /// version (see [`Write::first`]). Writing a key again keeps what an
    /// earlier write said: the commit writes one version per key, the
    /// last, and buffered writes leave no version in the engine, so it is
    /// as much the first as the earlier one was.
    fn buffer(&mut self, key: Bytes, value: Option<Stored>, first: bool) {
        match self.writes.entry(BufferedKey::new(key)) {
            btree_map::Entry::Occupied(mut own) => {
                let own = own.get_mut();
                own.value = value;
                own.first |= first;
            }
            btree_map::Entry::Vacant(new) => {
                new.insert(Write { value, first });
            }
        }
    }

    /// Sets `key` (in the [`Keyspace::Kv`] space) to `value` (visible to
    /// others once committed).
    pub fn set(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.set_in(Keyspace::Kv, key, value)
    }

    /// Sets `key` in `space` to `value`. The value never expires: a
    /// deadline the key had is gone, as with Redis's `SET`.
    pub fn set_in(&mut self, space: Keyspace, key: &[u8], value: &[u8]) -> Result<()> {
        self.set_with_deadline_in(space, key, value, None)
    }

    /// [`Transaction::set_in`] with a value the caller hands over: the
    /// buffer keeps these bytes instead of a copy (a caller that encodes
    /// a fresh value for each write saves a copy per write).
    pub fn set_owned_in(&mut self, space: Keyspace, key: &[u8], value: Bytes) -> Result<()> {
        self.write(
            space,
            key,
            Some(Stored {
                value,
                deadline: None,
            }),
        )
    }

    /// Writes `value` (kept without a copy, never expiring) to `key` in
    /// `space` if this transaction sees no value there, and returns `None`;
    /// otherwise writes nothing and returns the value it sees. SQL's
    /// INSERT: the uniqueness check of a primary key and the row's write
    /// in one step. Under locking, the key's exclusive lock is taken
    /// first, as [`Transaction::get_for_update_in`] does.
    ///
    /// When it writes, the read is not recorded for SSI, and need not be.
    /// A read matters to SSI through a concurrent transaction that writes
    /// the key after this one's snapshot (a rw-antidependency); but this
    /// transaction now writes the key too, so either that one committed
    /// first and this commit's write-write check refuses it, or this one
    /// commits first and the other's check refuses that one. (Under
    /// serializable every transaction checks write-write conflicts; one
    /// at a lower level is not part of anyone's dependency graph.) The
    /// buffered write is never taken back (a later delete is a write too),
    /// so the key stays in the write set this reasoning needs. Not
    /// recording it saves a copy of the key and an ordered-set insert per
    /// inserted row.
    ///
    /// When it does not write, the read is recorded (after the engine was
    /// read, which is the same thing for a read at a fixed snapshot: it
    /// sees the same versions whenever it runs, and a writer that
    /// committed in between is found at this transaction's commit, as for
    /// any writer that committed before a read).
    pub fn insert_owned_in(
        &mut self,
        space: Keyspace,
        key: &[u8],
        value: Bytes,
    ) -> Result<Option<Bytes>> {
        self.insert_spaced(&SpacedKey::from_user(space, key), value)
    }

    /// [`Transaction::insert_owned_in`] of a key built in place (see
    /// [`SpacedKey`]): the write buffer keeps a copy of it in the
    /// transaction's key arena, so the caller may build the next key in
    /// the same buffer.
    pub fn insert_spaced(&mut self, key: &SpacedKey, value: Bytes) -> Result<Option<Bytes>> {
        self.check()?;
        if self.read_only {
            return Err(Error::ReadOnly { txn: self.id });
        }
        if key.user_key().is_empty() {
            return Err(pydb_storage::Error::EmptyKey.into());
        }
        let space = key.space();
        let key = self.keys.copy(key.as_spaced());
        self.inserted.clear();
        self.lock(Resource::Key(&key), Mode::Exclusive)?;
        let read_ts = self.read_ts();
        let creates = self.checks_write_conflicts();
        let stored = Stored {
            value,
            deadline: None,
        };
        // One descent of the write buffer: the entry it finds is where the
        // write goes.
        match self.writes.entry(BufferedKey::new(key)) {
            btree_map::Entry::Occupied(mut own) => {
                let now_ms = self.now_ms;
                if let Some(seen) = own.get().value.as_ref().filter(|s| !s.is_expired(now_ms)) {
                    if let Some(ssi) = &self.ssi {
                        ssi.read_key(own.key());
                    }
                    return Ok(Some(seen.value.clone()));
                }
                // An own delete (or expired write): replaced, and the entry
                // keeps what it said of its first version (see `buffer`).
                own.get_mut().value = Some(stored);
                Ok(None)
            }
            btree_map::Entry::Vacant(new) => {
                // The range's bounds are built on the stack, and only the
                // value is copied out (every key in the range is a version
                // of this one): no allocation when the key is absent, the
                // case of every INSERT that succeeds.
                let engine = &self.inner.engine;
                let hint = &mut self.read_hint;
                let user_key = &new.key()[1..];
                let found = keys::with_point_bounds(space, user_key, read_ts, |start, end| {
                    let value = engine.first_value_in_hinted(
                        Bound::Included(start),
                        Bound::Included(end),
                        hint,
                    )?;
                    Ok::<_, Error>(value.map(|value| keys::decode_stored_owned(start, value)))
                })?;
                // As in `visible_stored`: with no version at all, the write
                // is the key's first version.
                let first = found.is_none() && creates;
                let seen = found.transpose()?.flatten();
                if let Some(seen) = seen.filter(|s| !s.is_expired(self.now_ms)) {
                    if let Some(ssi) = &self.ssi {
                        ssi.read_key(new.key());
                    }
                    return Ok(Some(seen.value));
                }
                if first {
                    self.inserted.extend_from_slice(new.key());
                }
                new.insert(Write {
                    value: Some(stored),
                    first,
                });
                Ok(None)
            }
        }
    }

    /// [`Transaction::set_owned_in`] for a *dependent* key: one that, by
    /// the caller's own invariant, has a value at a commit only if `owner`
    /// (in the same space) has one at that commit. SQL's secondary index
    /// entry is the dependent of its row: every commit that writes or
    /// deletes a row writes or deletes its entries with it.
    ///
    /// It matters only to garbage collection. When `owner` is the key the
    /// last [`Transaction::insert_owned_in`] of this transaction wrote as
    /// its first version (no version at all at or below the snapshot),
    /// this write is `key`'s first version too, and the collector need not
    /// walk it: see "Which keys a pass walks" in `gc` for why. Otherwise it
    /// is a plain `set_owned_in`. `key` itself is not read: the owner's
    /// read stands for it, so a dependent costs no engine read, where
    /// noting it as created by reading it would cost one.
    ///
    /// If the caller's invariant is broken (a damaged database), no read
    /// changes: the version this write hides is then removed by the next
    /// full collection instead of the next marked one.
    pub fn set_dependent_owned_in(
        &mut self,
        space: Keyspace,
        key: &[u8],
        value: Bytes,
        owner: &[u8],
    ) -> Result<()> {
        self.set_dependent_spaced(&SpacedKey::from_user(space, key), value, &[owner])
    }

    /// [`Transaction::set_dependent_owned_in`] of a key built in place
    /// (see [`SpacedKey`]), whose owner's user key is the concatenation
    /// of `owner`'s pieces (in the key's space): a caller holding the
    /// owner's key in parts (SQL's table prefix and primary key) need not
    /// join them.
    pub fn set_dependent_spaced(
        &mut self,
        key: &SpacedKey,
        value: Bytes,
        owner: &[&[u8]],
    ) -> Result<()> {
        self.check()?;
        if self.read_only {
            return Err(Error::ReadOnly { txn: self.id });
        }
        if key.user_key().is_empty() {
            return Err(pydb_storage::Error::EmptyKey.into());
        }
        let owner_inserted = is_spaced_key(&self.inserted, key.space(), owner);
        let key = self.keys.copy(key.as_spaced());
        self.lock(Resource::Key(&key), Mode::Exclusive)?;
        self.buffer(
            key,
            Some(Stored {
                value,
                deadline: None,
            }),
            owner_inserted,
        );
        Ok(())
    }

    /// Sets `key` (in the [`Keyspace::Kv`] space) to `value`, expiring after
    /// `deadline` (Unix ms; `None`: never). A deadline already past is
    /// stored as it is: the value is invisible at once, and collected like
    /// any expired value.
    pub fn set_with_deadline(
        &mut self,
        key: &[u8],
        value: &[u8],
        deadline: Option<u64>,
    ) -> Result<()> {
        self.set_with_deadline_in(Keyspace::Kv, key, value, deadline)
    }

    /// [`Transaction::set_with_deadline`] in `space`.
    pub fn set_with_deadline_in(
        &mut self,
        space: Keyspace,
        key: &[u8],
        value: &[u8],
        deadline: Option<u64>,
    ) -> Result<()> {
        let stored = Stored {
            value: Bytes::copy_from_slice(value),
            deadline,
        };
        self.write(space, key, Some(stored))
    }

    /// Deletes `key` (in the [`Keyspace::Kv`] space): a tombstone version,
    /// once committed. Deleting a missing key is not an error, and does not
    /// read it.
    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.delete_in(Keyspace::Kv, key)
    }

    /// Deletes `key` in `space`.
    pub fn delete_in(&mut self, space: Keyspace, key: &[u8]) -> Result<()> {
        self.write(space, key, None)
    }

    /// Commits: returns the commit timestamp (the snapshot for a
    /// transaction that wrote nothing). On error the transaction is rolled
    /// back; a retryable error means running it again may succeed.
    pub fn commit(mut self) -> Result<u64> {
        let result = self.check().and_then(|()| {
            self.inner.commit(CommitRequest {
                id: self.id,
                tracked: self.ssi.is_some(),
                snapshot: self.snapshot,
                isolation: self.isolation,
                concurrency: self.concurrency,
                // The buffer is not needed after commit, successful or
                // not: hand it over rather than copy it.
                writes: std::mem::take(&mut self.writes),
                created: self.take_created(),
                lock_wait: self.lock_wait,
            })
        });
        self.finish(result.is_ok());
        result
    }

    /// The keys this transaction created, ascending and without repeats,
    /// as the commit's garbage collection filter merges them with the
    /// write buffer. Keys are mostly read in ascending order (a bulk
    /// insert by increasing key), which the sort finds in one pass.
    fn take_created(&self) -> Vec<Bytes> {
        let mut created = std::mem::take(&mut *self.created.lock());
        created.sort_unstable();
        created.dedup();
        created
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

/// Whether `spaced` is the key of `space` whose user key is the
/// concatenation of `pieces`.
fn is_spaced_key(spaced: &[u8], space: Keyspace, pieces: &[&[u8]]) -> bool {
    let Some((&prefix, mut rest)) = spaced.split_first() else {
        return false;
    };
    if prefix != space.prefix() {
        return false;
    }
    for piece in pieces {
        match rest.split_at_checked(piece.len()) {
            Some((head, tail)) if head == *piece => rest = tail,
            _ => return false,
        }
    }
    rest.is_empty()
}

/// A stream of the keys of one range a transaction sees, ascending, with
/// their values: what [`Transaction::scan`] returns.
///
/// It walks the engine's versions of the range lazily, one key at a time,
/// and merges in the transaction's own buffered writes, so counting or
/// paging through a large database holds one item in memory, not the
/// database. For each key it keeps the first version at or below the
/// read timestamp (the versions of a key come newest first, see `keys`),
/// skips tombstones, and lets an own write replace (or, for a delete,
/// hide) the committed value of the same key.
///
/// The walk never decodes a version key into a new buffer: it works on
/// the encoded *key part* of each engine key (`keys::split_version_key`:
/// the escaped key and its terminator, checked in place). The key part of
/// the key already decided is kept in one reused buffer, so an older
/// version of it is recognised by comparing bytes, and the own writes are
/// merged by their key parts, which sort as the keys do. A key is built
/// only when the caller asks for it: [`TxnScan::next_value`] (a table
/// scan that wants only the rows) builds none, so a version costs no
/// allocation here. A key part is checked only past the bytes it shares
/// with the key part before it (`keys::split_version_key_after`: a
/// table's keys share most of theirs), and [`TxnScan::next_value_ref`]
/// lends the value, skipping the merge when there are no own writes to
/// merge (a query's scan).
///
/// The engine is read a chunk at a time through
/// [`StorageEngine::scan_with_locked`](pydb_storage::StorageEngine::scan_with_locked)
/// (the walk never calls the engine, so the memory engine can lend its
/// map's bytes under its read lock rather than copy them out first),
/// which lends each version's key and value for the length of a call: the
/// walk decides visibility there and copies the key part and the value of
/// each visible version into the chunk's buffer (an older version, a
/// version above the read timestamp, a tombstone or an expired value is
/// passed over without a copy). A chunk stops after a number of visible
/// versions that doubles from chunk to chunk (so a scan that stops early
/// reads little), and the next one resumes just after the last version
/// key it visited: the versions of one key are adjacent, newest first, so
/// the key part kept in `decided` still passes over the rest of that
/// key's versions. A version therefore costs no `Bytes` of its own (a
/// reference count taken and dropped for its key and for its value) and
/// no call through a boxed iterator; [`TxnScan::next_value_ref`] lends the
/// value straight from the chunk's buffer. A chunk's buffer is the one
/// before it, emptied, unless a `Bytes` handed out (by the keyed reads or
/// the merge) still holds a slice of that one or it is too small for the
/// chunk (a new one is made then: growing it would copy dead bytes).
///
/// A consumer that takes a batch of values at once skips the chunk:
/// [`TxnScan::next_values_with`] runs the same walk and calls the
/// consumer on each visible value while the engine still lends it (a SQL
/// table scan decodes the row there), so a value is read once, where the
/// engine keeps it, and costs no copy, no entry and no second hand-out.
///
/// What it yields is fixed by the snapshot: commits made while it runs are
/// invisible to a snapshot transaction. (Under read committed or locking,
/// the read timestamp is taken when the scan starts.) After an error it
/// yields nothing more.
pub struct TxnScan<'a> {
    /// The engine's visible versions of the range, ascending, a chunk at
    /// a time (`None`: an empty range).
    versions: Option<Versions<'a>>,
    /// Versions above this timestamp are invisible.
    read_ts: u64,
    /// Values whose deadline is before this instant (Unix ms) are hidden.
    now_ms: u64,
    /// The key part of the key whose visible version was already found
    /// (empty before the first: a key part is never empty): its older
    /// versions are skipped.
    decided: Vec<u8>,
    /// The next visible committed version, looked ahead for the merge.
    committed: Option<Committed>,
    /// Whether the engine's versions are used up.
    committed_done: bool,
    /// The transaction's own writes in the range, ascending.
    own: std::vec::IntoIter<OwnWrite>,
    /// The next own write, looked ahead for the merge.
    next_own: Option<OwnWrite>,
    /// A transaction the stream owns and ends with it (a snapshot scan of
    /// the manager): it keeps the snapshot registered, so garbage
    /// collection leaves the versions the stream is yet to read.
    owner: Option<Transaction>,
    /// Set after an error: the stream is over.
    failed: bool,
    /// The value [`TxnScan::next_value_ref`] lends when it merges.
    lent: Bytes,
}

/// The first chunk's number of visible versions; each next one doubles...
const FIRST_CHUNK: usize = 32;
/// ... up to this many.
const MAX_CHUNK: usize = 4096;
/// A chunk also ends once its buffer holds this many bytes (large values).
const MAX_CHUNK_BYTES: usize = 1 << 20;

/// The walk's source: the engine's versions of a range, read a chunk of
/// visible versions at a time (see [`TxnScan`]).
struct Versions<'a> {
    engine: &'a dyn pydb_storage::StorageEngine,
    /// Where the next chunk starts: the range's start, then just after the
    /// last version key the chunk before visited.
    next_start: std::ops::Bound<Bytes>,
    end: std::ops::Bound<Bytes>,
    /// Whether the engine's range is used up (the last chunk was read).
    exhausted: bool,
    /// How many visible versions the next chunk takes.
    chunk: usize,
    /// The key parts and values of the current chunk's visible versions.
    buffer: Bytes,
    /// Where each of them is in `buffer`.
    entries: Vec<Entry>,
    /// The next entry to hand out.
    next: usize,
    /// Whether the chunks keep each version's key part: not while only
    /// values are read ([`TxnScan::next_value_ref`] without own writes,
    /// a table scan), which saves a copy per version.
    keys: bool,
    /// Where the current chunk started, and the walk's `decided` then:
    /// a chunk read without keys is read again from there when a key is
    /// asked for (see [`Versions::want_keys`]).
    chunk_start: std::ops::Bound<Bytes>,
    chunk_decided: Vec<u8>,
}

/// A visible version copied into a chunk: its key part at
/// `buffer[key_start..value_start]`, the user's value after it up to
/// `value_end`.
#[derive(Clone, Copy)]
struct Entry {
    key_start: usize,
    value_start: usize,
    value_end: usize,
    deadline: Option<u64>,
}

impl<'a> Versions<'a> {
    fn new(engine: &'a dyn pydb_storage::StorageEngine, range: pydb_storage::KeyRange) -> Self {
        Versions {
            engine,
            next_start: range.start,
            end: range.end,
            exhausted: false,
            chunk: FIRST_CHUNK,
            buffer: Bytes::new(),
            entries: Vec::new(),
            next: 0,
            keys: true,
            chunk_start: std::ops::Bound::Unbounded,
            chunk_decided: Vec::new(),
        }
    }

    /// Makes the chunks keep key parts from now on. If the current chunk
    /// has none and entries not yet handed out, it is read again from
    /// its start, with the walk's state of then, and the entries already
    /// handed out are passed over: the visible versions at the snapshot
    /// are the same on any reading (commits since are above the read
    /// timestamp, and garbage collection removes only versions the
    /// snapshot does not see), so the reading goes on exactly where it
    /// was. (A stream read both ways, lent values first, then keys.)
    fn want_keys(&mut self, decided: &mut Vec<u8>, read_ts: u64, now_ms: u64) -> Result<()> {
        if self.keys {
            return Ok(());
        }
        self.keys = true;
        let handed_out = self.next;
        if handed_out >= self.entries.len() {
            return Ok(());
        }
        self.next_start = self.chunk_start.clone();
        decided.clone_from(&self.chunk_decided);
        self.exhausted = false;
        self.chunk = self.chunk.max(self.entries.len());
        self.fill(decided, read_ts, now_ms)?;
        self.next = handed_out.min(self.entries.len());
        Ok(())
    }

    /// The next visible version (tombstones and expired values left out),
    /// read from the engine when the chunk is used up. `decided` is the
    /// walk's key part of the key last decided (see [`TxnScan`]).
    #[inline]
    fn next(&mut self, decided: &mut Vec<u8>, read_ts: u64, now_ms: u64) -> Result<Option<Entry>> {
        loop {
            if let Some(&entry) = self.entries.get(self.next) {
                self.next += 1;
                return Ok(Some(entry));
            }
            if self.exhausted {
                return Ok(None);
            }
            self.fill(decided, read_ts, now_ms)?;
        }
    }

    /// Reads the next chunk of visible versions from the engine.
    fn fill(&mut self, decided: &mut Vec<u8>, read_ts: u64, now_ms: u64) -> Result<()> {
        let want = self.chunk;
        // About the last chunk's bytes per entry, so that the buffer is
        // not grown (and copied) as it fills.
        let per_entry = self.buffer.len() / self.entries.len().max(1) * 9 / 8;
        let room = want.saturating_mul(per_entry).min(MAX_CHUNK_BYTES);
        // The last chunk's buffer is taken back when nothing else holds a
        // slice of it (the keyed reads hand out `Bytes` slices, which keep
        // it) and it has the room, emptied first, so nothing of the last
        // chunk carries over. One that is too small is let go rather than
        // grown: growing it (`realloc`) would copy all of its old bytes,
        // which are of no use, and the chunks of a long scan double, so
        // every chunk up to the largest would be copied once more.
        let mut buffer = match std::mem::take(&mut self.buffer).try_into_mut() {
            Ok(mut reused) if reused.capacity() >= room => {
                reused.clear();
                reused
            }
            _ => bytes::BytesMut::with_capacity(room),
        };
        self.entries.clear();
        self.next = 0;
        if !self.keys {
            self.chunk_start = self.next_start.clone();
            self.chunk_decided.clone_from(decided);
        }
        let keys = self.keys;
        let entries = &mut self.entries;
        let walked = Self::walk(
            self.engine,
            &mut self.next_start,
            &self.end,
            &mut self.exhausted,
            decided,
            read_ts,
            now_ms,
            |engine_key, key_part, value, start, deadline| {
                if entries.is_empty() && buffer.capacity() == 0 {
                    // The first chunk: room for entries like its first.
                    buffer.reserve(
                        want.saturating_mul(engine_key.len() + value.len())
                            .min(MAX_CHUNK_BYTES),
                    );
                }
                let key_start = buffer.len();
                if keys {
                    buffer.extend_from_slice(engine_key.get(..key_part).unwrap_or_default());
                }
                let value_start = buffer.len();
                buffer.extend_from_slice(value.get(start..).unwrap_or_default());
                entries.push(Entry {
                    key_start,
                    value_start,
                    value_end: buffer.len(),
                    deadline,
                });
                if entries.len() >= want || buffer.len() >= MAX_CHUNK_BYTES {
                    std::ops::ControlFlow::Break(())
                } else {
                    std::ops::ControlFlow::Continue(())
                }
            },
        );
        if let Err(err) = walked {
            // No entry may point into a buffer that is not there.
            self.entries.clear();
            return Err(err);
        }
        if !self.exhausted {
            self.chunk = (want * 2).min(MAX_CHUNK);
        }
        self.buffer = buffer.freeze();
        Ok(())
    }

    /// The one walk of the engine's versions, shared by the chunks
    /// ([`Versions::fill`]) and the lent values
    /// ([`TxnScan::next_values_with`]): from `next_start` to `end`, each
    /// version is decided by [`visible`] while the engine lends its bytes,
    /// and each visible one is handed to `found` (its engine key, the
    /// length of its key part, the stored value, where the user's value
    /// starts in it, its deadline) until `found` breaks. `next_start` is
    /// then just after that version's key, or `exhausted` is set when the
    /// range ran out. (An associated function over the fields it needs,
    /// so that `found` may borrow the chunk's buffer and entries.)
    #[expect(
        clippy::too_many_arguments,
        reason = "the walk's position and the snapshot, split so that `found` can borrow the rest"
    )]
    #[inline]
    fn walk(
        engine: &dyn pydb_storage::StorageEngine,
        next_start: &mut std::ops::Bound<Bytes>,
        end: &std::ops::Bound<Bytes>,
        exhausted: &mut bool,
        decided: &mut Vec<u8>,
        read_ts: u64,
        now_ms: u64,
        mut found: impl FnMut(&[u8], usize, &[u8], usize, Option<u64>) -> std::ops::ControlFlow<()>,
    ) -> Result<()> {
        let mut failed: Option<Error> = None;
        let mut stopped_at: Option<Bytes> = None;
        let start = next_start.as_ref().map(|b| b.as_ref());
        let end = end.as_ref().map(|b| b.as_ref());
        // The visitor only decides and hands on, never calls the engine,
        // so the engine may lend its own bytes under its lock.
        let scanned = engine.scan_with_locked(
            (start, end),
            &mut |engine_key, value| match visible(engine_key, value, decided, read_ts, now_ms) {
                Ok(None) => std::ops::ControlFlow::Continue(()),
                Ok(Some((key_part, start, deadline))) => {
                    let flow = found(engine_key, key_part, value, start, deadline);
                    if flow.is_break() {
                        stopped_at = Some(Bytes::copy_from_slice(engine_key));
                    }
                    flow
                }
                Err(err) => {
                    failed = Some(err);
                    std::ops::ControlFlow::Break(())
                }
            },
        );
        if let Some(err) = scanned.err().map(Error::from).or(failed) {
            return Err(err);
        }
        match stopped_at {
            Some(last) => *next_start = std::ops::Bound::Excluded(last),
            None => *exhausted = true,
        }
        Ok(())
    }

    /// The user's value of `entry`, in the chunk's buffer.
    #[inline]
    fn value(&self, entry: &Entry) -> &[u8] {
        self.buffer
            .get(entry.value_start..entry.value_end)
            .unwrap_or_default()
    }
}

/// The walk's decision on one engine version: `Some((key part length,
/// start of the user's value, deadline))` when it is its key's visible
/// version with a live value, `None` when it is passed over (an older
/// version of the key decided, a version above `read_ts`, a tombstone, an
/// expired value). A version at or below `read_ts` decides its key:
/// `decided` becomes its key part.
#[inline]
fn visible(
    engine_key: &[u8],
    value: &[u8],
    decided: &mut Vec<u8>,
    read_ts: u64,
    now_ms: u64,
) -> Result<Option<(usize, usize, Option<u64>)>> {
    let shared = keys::common_prefix_len(engine_key, decided);
    // An older version of the key just decided: its key part was checked
    // then, and the rest is a timestamp.
    if shared == decided.len() && !decided.is_empty() && engine_key.len() == shared + keys::TS_LEN {
        return Ok(None);
    }
    let (key_part, ts) = keys::split_version_key_after(engine_key, decided, shared)?;
    if ts > read_ts {
        return Ok(None);
    }
    let header = keys::decode_header(engine_key, value)?;
    // Only the bytes after those shared with the previous key part are
    // copied (a few, in a table's scan).
    let keep = shared.min(key_part);
    decided.truncate(keep);
    decided.extend_from_slice(engine_key.get(keep..key_part).unwrap_or_default());
    Ok(match header {
        Some((start, deadline)) if !keys::expired(deadline, now_ms) => {
            Some((key_part, start, deadline))
        }
        _ => None,
    })
}

/// A visible committed version: its engine key, the length of the key's
/// key part in it, and the value.
struct Committed {
    engine_key: Bytes,
    key_part: usize,
    stored: Stored,
}

impl Committed {
    fn key_part(&self) -> &[u8] {
        self.engine_key.get(..self.key_part).unwrap_or_default()
    }
}

/// One of the transaction's own writes in a scanned range.
struct OwnWrite {
    /// The key part its versions will have (`keys::key_prefix`), to merge
    /// with the engine's.
    key_part: Vec<u8>,
    /// The spaced key.
    spaced: Bytes,
    /// The value, or `None` for a delete.
    value: Option<Stored>,
}

/// Where an item of the merge came from; the key is built from it only
/// when asked for.
enum Source {
    Committed { engine_key: Bytes, key_part: usize },
    Own { spaced: Bytes },
}

impl Source {
    /// The user key, without the space byte.
    fn user_key(&self) -> Bytes {
        match self {
            Source::Committed {
                engine_key,
                key_part,
            } => keys::user_key_of_part(engine_key.get(..*key_part).unwrap_or_default()),
            Source::Own { spaced } => spaced.slice(1..),
        }
    }
}

impl std::fmt::Debug for TxnScan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxnScan")
            .field("read_ts", &self.read_ts)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl<'a> TxnScan<'a> {
    fn empty() -> Self {
        Self::new(None, 0, 0, Vec::new())
    }

    /// A stream over the engine's `versions`, merged with `own` (spaced
    /// key, value or delete) ascending.
    fn new(
        versions: Option<Versions<'a>>,
        read_ts: u64,
        now_ms: u64,
        own: Vec<(Bytes, Option<Stored>)>,
    ) -> Self {
        let own: Vec<OwnWrite> = own
            .into_iter()
            .map(|(spaced, value)| OwnWrite {
                key_part: keys::key_prefix(&spaced),
                spaced,
                value,
            })
            .collect();
        Self {
            versions,
            read_ts,
            now_ms,
            decided: Vec::new(),
            committed: None,
            committed_done: false,
            own: own.into_iter(),
            next_own: None,
            owner: None,
            failed: false,
            lent: Bytes::new(),
        }
    }

    /// The same stream, owning `tx` (ended when the stream is dropped).
    pub(crate) fn owning(mut self, tx: Transaction) -> Self {
        self.owner = Some(tx);
        self
    }

    /// The next key's visible version in the engine: its key part (as
    /// the `engine_key` of a [`Committed`]) and value, shared with the
    /// chunk's buffer.
    fn next_committed(&mut self) -> Result<Option<Committed>> {
        let Some(versions) = &mut self.versions else {
            return Ok(None);
        };
        versions.want_keys(&mut self.decided, self.read_ts, self.now_ms)?;
        let Some(entry) = versions.next(&mut self.decided, self.read_ts, self.now_ms)? else {
            return Ok(None);
        };
        Ok(Some(Committed {
            engine_key: versions.buffer.slice(entry.key_start..entry.value_start),
            key_part: entry.value_start - entry.key_start,
            stored: Stored {
                value: versions.buffer.slice(entry.value_start..entry.value_end),
                deadline: entry.deadline,
            },
        }))
    }

    /// The next item of the merge of committed data and own writes.
    fn step(&mut self) -> Result<Option<(Source, Stored)>> {
        loop {
            if self.committed.is_none() && !self.committed_done {
                self.committed = self.next_committed()?;
                self.committed_done = self.committed.is_none();
            }
            if self.next_own.is_none() {
                self.next_own = self.own.next();
            }
            let order = match (&self.committed, &self.next_own) {
                (None, None) => return Ok(None),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(committed), Some(own)) => committed.key_part().cmp(&own.key_part),
            };
            match order {
                std::cmp::Ordering::Less => {
                    return Ok(self.committed.take().map(|c| {
                        let source = Source::Committed {
                            engine_key: c.engine_key,
                            key_part: c.key_part,
                        };
                        (source, c.stored)
                    }));
                }
                // The own write replaces the committed value.
                std::cmp::Ordering::Equal => self.committed = None,
                std::cmp::Ordering::Greater => {}
            }
            if let Some(OwnWrite {
                spaced,
                value: Some(stored),
                ..
            }) = self.next_own.take()
                && !stored.is_expired(self.now_ms)
            {
                return Ok(Some((Source::Own { spaced }, stored)));
            }
            // An own delete (or an own write already expired): nothing to
            // yield for this key.
        }
    }

    /// The next item, or `None` at the end or after an error (the error
    /// itself is returned once).
    fn advance(&mut self) -> Option<Result<(Source, Stored)>> {
        if self.failed {
            return None;
        }
        match self.step() {
            Ok(item) => item.map(Ok),
            Err(err) => {
                self.failed = true;
                Some(Err(err))
            }
        }
    }
}

impl TxnScan<'_> {
    /// The next key with its value and expiry deadline (Unix ms; `None`:
    /// never), or `None` at the end.
    pub fn next_with_deadline(&mut self) -> Option<Result<(Bytes, Bytes, Option<u64>)>> {
        self.advance()
            .map(|item| item.map(|(source, s)| (source.user_key(), s.value, s.deadline)))
    }

    /// The next value, or `None` at the end: the same items as
    /// [`Iterator::next`] without their keys, which are then never built
    /// (what a table scan that reads only the rows wants).
    pub fn next_value(&mut self) -> Option<Result<Bytes>> {
        self.advance()
            .map(|item| item.map(|(_, stored)| stored.value))
    }

    /// [`TxnScan::next_value`], lent: the value's bytes, valid until the
    /// next call. What a table scan that decodes each row at once wants:
    /// when the transaction has no writes of its own left in the range
    /// (a query's scan, most often), the engine's versions are walked
    /// without the merge, and the value is read in the chunk's buffer,
    /// with no `Bytes` of its own made and dropped per row.
    pub fn next_value_ref(&mut self) -> Option<Result<&[u8]>> {
        if self.failed {
            return None;
        }
        if self.committed.is_none() && self.next_own.is_none() && self.own.len() == 0 {
            if self.committed_done {
                return None;
            }
            let versions = self.versions.as_mut()?;
            // Values alone from here on, unless keys were asked for.
            if versions.entries.is_empty() && !versions.exhausted {
                versions.keys = false;
            }
            return match versions.next(&mut self.decided, self.read_ts, self.now_ms) {
                Ok(Some(entry)) => Some(Ok(versions.value(&entry))),
                Ok(None) => {
                    self.committed_done = true;
                    None
                }
                Err(err) => {
                    self.failed = true;
                    Some(Err(err))
                }
            };
        }
        match self.advance()? {
            Ok((_, stored)) => {
                self.lent = stored.value;
                Some(Ok(&self.lent))
            }
            Err(err) => Some(Err(err)),
        }
    }
}

impl TxnScan<'_> {
    /// Hands the next values, up to `max` of them, to `take`, lent for
    /// the length of its call, and returns how many it handed (`0`: the
    /// end, for any `max` above 0). The same values as
    /// [`TxnScan::next_value`], for a consumer that takes a batch at once
    /// (a table scan that decodes each row into a batch of rows).
    ///
    /// This is the cheapest way through a scan: when the transaction has
    /// no writes of its own left in the range (a query's scan, most often),
    /// `take` runs inside the engine's walk, on the bytes the engine lends
    /// ([`StorageEngine::scan_with_locked`](pydb_storage::StorageEngine::scan_with_locked)),
    /// so a value is never copied into a chunk, no entry is made for it
    /// and nothing is handed out a second time. `take` runs while the
    /// engine may hold a read lock: it must not call into the engine (or
    /// the transaction). Otherwise (own writes to merge) the values come
    /// from the merge, one at a time.
    ///
    /// `take` returning `Break` ends the batch after the value it was
    /// given (a consumer that failed on it keeps its own error; `take` is
    /// told nothing it could fail on, so a stop costs the walk no `Result`
    /// per value). The next call goes on just after the last value
    /// handed, with the same snapshot: the versions are decided by the
    /// same walk either way. After an error of the scan itself nothing
    /// more is handed.
    pub fn next_values_with(
        &mut self,
        max: usize,
        take: impl FnMut(&[u8]) -> std::ops::ControlFlow<()>,
    ) -> Result<usize> {
        let handed = self.hand_values(max, take);
        if handed.is_err() {
            self.failed = true;
        }
        handed
    }

    /// [`TxnScan::next_values_with`], without marking the stream failed.
    fn hand_values(
        &mut self,
        max: usize,
        mut take: impl FnMut(&[u8]) -> std::ops::ControlFlow<()>,
    ) -> Result<usize> {
        let mut handed = 0;
        if self.failed || max == 0 {
            return Ok(0);
        }
        if self.committed.is_some() || self.next_own.is_some() || self.own.len() > 0 {
            // Own writes to merge: the items of the merge, one at a time.
            while handed < max {
                let Some((_, stored)) = self.step()? else {
                    break;
                };
                handed += 1;
                if take(&stored.value).is_break() {
                    break;
                }
            }
            return Ok(handed);
        }
        let Some(versions) = self.versions.as_mut() else {
            return Ok(0);
        };
        // What is left of a chunk read before (by a keyed read or
        // `next_value_ref`), then straight from the engine.
        while handed < max {
            let Some(&entry) = versions.entries.get(versions.next) else {
                break;
            };
            versions.next += 1;
            handed += 1;
            if take(versions.value(&entry)).is_break() {
                return Ok(handed);
            }
        }
        if handed == max || versions.exhausted {
            return Ok(handed);
        }
        Versions::walk(
            versions.engine,
            &mut versions.next_start,
            &versions.end,
            &mut versions.exhausted,
            &mut self.decided,
            self.read_ts,
            self.now_ms,
            |_, _, value, start, _| {
                handed += 1;
                let flow = take(value.get(start..).unwrap_or_default());
                if handed >= max {
                    std::ops::ControlFlow::Break(())
                } else {
                    flow
                }
            },
        )?;
        Ok(handed)
    }
}

impl Iterator for TxnScan<'_> {
    type Item = Result<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.advance()
            .map(|item| item.map(|(source, s)| (source.user_key(), s.value)))
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        self.finish(false);
    }
}
