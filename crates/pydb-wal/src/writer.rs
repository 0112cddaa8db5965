//! `LogWriter`: appends records and makes them durable, with group commit.
//!
//! ## Group commit
//!
//! An `fdatasync` costs the same whether it covers one record or a thousand,
//! so with [`SyncPolicy::Always`] concurrent writers share it:
//!
//! 1. a writer appends its batch (appends are serialized by `append_state`)
//!    and learns the offset `end` where its bytes stop;
//! 2. it then waits until `synced_end >= end`. If no sync is running, it
//!    becomes the *leader*: it notes how far the file has been appended,
//!    syncs without holding any lock, publishes the new `synced_end` and
//!    wakes everyone. Writers that appended while the leader was syncing
//!    find a sync running, wait, and the next leader covers them.
//!
//! Throughput therefore grows with the number of writers while each writer
//! still returns only once its own bytes are durable. A sync is shared by
//! one *cohort*, not by every writer: while the leader syncs, the writers
//! its previous sync released append again and wait for the next one. The
//! benchmark (`benches/wal.rs`, figures in the crate README) measured about
//! 4.7 records per `fdatasync` with 8 threads and 9.1 with 16.
//!
//! ## Poisoning
//!
//! After a failed sync the writer refuses every further write and sync with
//! a poisoned error ([`pydb_file::Error::Poisoned`], of kind
//! [`ErrorKind::Poisoned`](crate::ErrorKind::Poisoned)): a retried `fsync`
//! can report success for pages the kernel already dropped (the "fsyncgate" lesson PostgreSQL learned in
//! 2018). A failed append is rolled back by truncating the file to where it
//! was; only if that also fails is the writer poisoned.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use pydb_file::File;

use crate::record::{
    FLAG_BATCH_CONTINUES, MAX_PAYLOAD_LEN, RECORD_HEADER_LEN, encode_file_header, encode_record,
    finish_record,
};
use crate::{Error, Result};

/// When appended records are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every append is durable before it returns (with group commit).
    Always,
    /// A background thread syncs at this interval: a crash loses at most the
    /// writes of the last interval.
    Periodic(Duration),
    /// Never sync on its own: the operating system decides when bytes reach
    /// the disk. [`LogWriter::sync`] still syncs on request.
    Never,
}

/// Where an appended batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the batch's first record.
    pub start: u64,
    /// Offset just past the batch's last record.
    pub end: u64,
}

/// Counters of one writer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    /// Records appended.
    pub records: u64,
    /// Batches appended (a single record counts as one batch).
    pub batches: u64,
    /// `sync_data` calls issued.
    pub syncs: u64,
    /// Bytes appended, headers included.
    pub bytes: u64,
}

/// Appends records to one [`File`] and makes them durable by policy.
#[derive(Debug)]
pub struct LogWriter<F: File> {
    inner: Arc<Inner<F>>,
    flusher: Option<Flusher>,
}

#[derive(Debug)]
struct Inner<F: File> {
    file: F,
    policy: SyncPolicy,
    /// Offset just past the last complete append; serializes appends.
    append_end: Mutex<u64>,
    sync: Mutex<SyncState>,
    synced: Condvar,
    records: AtomicU64,
    batches: AtomicU64,
    syncs: AtomicU64,
    bytes: AtomicU64,
}

#[derive(Debug)]
struct SyncState {
    /// Every byte before this offset is durable.
    synced_end: u64,
    /// A leader is inside `sync_data` right now.
    syncing: bool,
    /// Why the writer refuses to go on, once something failed.
    poisoned: Option<String>,
}

#[derive(Debug)]
struct Flusher {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

impl<F: File + 'static> LogWriter<F> {
    /// Starts writing to `file`, which must hold a valid log ending at its
    /// current length (use [`crate::Scanner`] recovery first) or be empty,
    /// in which case the file header is written and synced.
    ///
    /// A non-empty file without a valid header is refused with
    /// a corruption error: records appended behind a broken header could
    /// never be read back.
    pub fn new(file: F, policy: SyncPolicy) -> Result<Self> {
        let mut len = file.len()?;
        if len == 0 {
            file.append(&encode_file_header())?;
            file.sync_data()?;
            len = file.len()?;
        } else if !crate::check_file_header(&file)? {
            return Err(Error::corrupted(
                file.path(),
                0,
                "log cut short inside its file header; recover it with Scanner first",
            ));
        }
        let inner = Arc::new(Inner {
            file,
            policy,
            append_end: Mutex::new(len),
            sync: Mutex::new(SyncState {
                synced_end: len,
                syncing: false,
                poisoned: None,
            }),
            synced: Condvar::new(),
            records: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        });
        let flusher = match policy {
            SyncPolicy::Periodic(interval) => Some(Flusher::start(Arc::clone(&inner), interval)),
            SyncPolicy::Always | SyncPolicy::Never => None,
        };
        Ok(Self { inner, flusher })
    }
}

impl<F: File> LogWriter<F> {
    /// The file written to.
    pub fn file(&self) -> &F {
        &self.inner.file
    }

    /// The sync policy.
    pub fn policy(&self) -> SyncPolicy {
        self.inner.policy
    }

    /// Offset just past the last appended record.
    pub fn end(&self) -> u64 {
        *self.inner.append_end.lock()
    }

    /// Every byte before this offset is durable.
    pub fn synced_end(&self) -> u64 {
        self.inner.sync.lock().synced_end
    }

    /// The writer's counters.
    pub fn stats(&self) -> WriterStats {
        WriterStats {
            records: self.inner.records.load(Ordering::Relaxed),
            batches: self.inner.batches.load(Ordering::Relaxed),
            syncs: self.inner.syncs.load(Ordering::Relaxed),
            bytes: self.inner.bytes.load(Ordering::Relaxed),
        }
    }

    /// Appends one record; durable on return under [`SyncPolicy::Always`].
    pub fn append(&self, payload: &[u8]) -> Result<Appended> {
        self.append_batch(&[payload])
    }

    /// Appends `payloads` as one atomic batch: after a crash, recovery finds
    /// either all of them or none. Durable on return under
    /// [`SyncPolicy::Always`].
    pub fn append_batch(&self, payloads: &[&[u8]]) -> Result<Appended> {
        let appended = self.append_batch_unsynced(payloads)?;
        if self.inner.policy == SyncPolicy::Always {
            self.sync_to(appended.end)?;
        }
        Ok(appended)
    }

    /// Appends a batch without waiting for durability, whatever the policy;
    /// pair it with [`LogWriter::sync_to`]. Engines use this to update their
    /// in-memory state before they wait for the disk.
    pub fn append_batch_unsynced(&self, payloads: &[&[u8]]) -> Result<Appended> {
        if let Some(payload) = payloads.iter().find(|p| p.len() > MAX_PAYLOAD_LEN as usize) {
            return Err(Error::RecordTooLarge {
                len: payload.len(),
                max: MAX_PAYLOAD_LEN,
            });
        }
        let mut buf = Vec::with_capacity(
            payloads
                .iter()
                .map(|p| p.len() + crate::RECORD_HEADER_LEN)
                .sum(),
        );
        self.check_poisoned()?;
        let mut end = self.inner.append_end.lock();
        let start = *end;
        // Encoded under the append lock: each record's checksum covers the
        // offset it lands at, which is known only now.
        for (i, payload) in payloads.iter().enumerate() {
            let flags = if i + 1 < payloads.len() {
                FLAG_BATCH_CONTINUES
            } else {
                0
            };
            encode_record(start + buf.len() as u64, flags, payload, &mut buf);
        }
        self.write_batch(&mut end, &buf, payloads.len())
    }

    /// Writes the encoded batch `buf` at `*end` (the append lock is held),
    /// cutting it back off on failure, and counts it.
    fn write_batch(&self, end: &mut u64, buf: &[u8], records: usize) -> Result<Appended> {
        let start = *end;
        if let Err(err) = self.inner.file.append(buf) {
            // A prefix of the batch may be in the file: cut it off so that
            // the next append does not land behind garbage.
            if let Err(truncate_err) = self.inner.file.set_len(start) {
                self.poison(format!(
                    "append failed ({err}) and truncation failed ({truncate_err})"
                ));
            }
            return Err(err.into());
        }
        *end = start + buf.len() as u64;
        let appended = Appended { start, end: *end };
        self.inner
            .records
            .fetch_add(records as u64, Ordering::Relaxed);
        self.inner.batches.fetch_add(1, Ordering::Relaxed);
        self.inner
            .bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(appended)
    }

    /// Makes every record appended so far durable.
    pub fn sync(&self) -> Result<()> {
        let end = self.end();
        self.sync_to(end)
    }

    /// Waits until every byte before `end` is durable, syncing as the group
    /// commit leader if no other writer is syncing already.
    pub fn sync_to(&self, end: u64) -> Result<()> {
        self.inner.sync_to(end)
    }

    /// Appends a batch of `count` records (not synced, as
    /// [`LogWriter::append_batch_unsynced`]) whose payloads the caller
    /// writes straight into the record buffer: `payload(i, out)` appends
    /// record `i`'s payload to `out`. The records are encoded into `buf`,
    /// which is cleared first and kept by the caller for the next batch, so
    /// an append allocates nothing once `buf` has grown, and each payload
    /// byte is copied once, into the bytes the checksum is computed over
    /// and the file is written from.
    ///
    /// `payload` runs under the append lock (a record's checksum covers its
    /// offset, known only there): it should only copy bytes. A payload
    /// over [`MAX_PAYLOAD_LEN`] fails the batch before anything is written.
    pub fn append_batch_with(
        &self,
        buf: &mut Vec<u8>,
        count: usize,
        mut payload: impl FnMut(usize, &mut Vec<u8>),
    ) -> Result<Appended> {
        buf.clear();
        self.check_poisoned()?;
        let mut end = self.inner.append_end.lock();
        let start = *end;
        for i in 0..count {
            let at = buf.len();
            buf.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
            payload(i, buf);
            let len = buf.len() - at - RECORD_HEADER_LEN;
            if len > MAX_PAYLOAD_LEN as usize {
                buf.clear();
                return Err(Error::RecordTooLarge {
                    len,
                    max: MAX_PAYLOAD_LEN,
                });
            }
            let flags = if i + 1 < count {
                FLAG_BATCH_CONTINUES
            } else {
                0
            };
            finish_record(start + at as u64, flags, &mut buf[at..]);
        }
        self.write_batch(&mut end, buf, count)
    }

    fn check_poisoned(&self) -> Result<()> {
        match &self.inner.sync.lock().poisoned {
            Some(reason) => Err(self.inner.poisoned_error(reason)),
            None => Ok(()),
        }
    }

    fn poison(&self, reason: String) {
        self.inner.sync.lock().poisoned.get_or_insert(reason);
        self.inner.synced.notify_all();
    }
}

impl<F: File> Inner<F> {
    fn poisoned_error(&self, reason: &str) -> Error {
        Error::poisoned(self.file.path(), reason)
    }

    fn sync_to(&self, end: u64) -> Result<()> {
        let mut state = self.sync.lock();
        loop {
            if let Some(reason) = &state.poisoned {
                return Err(self.poisoned_error(reason));
            }
            if state.synced_end >= end {
                return Ok(());
            }
            if state.syncing {
                self.synced.wait(&mut state);
                continue;
            }
            // Become the leader: sync everything appended so far.
            state.syncing = true;
            drop(state);
            let target = *self.append_end.lock();
            let result = self.file.sync_data();
            self.syncs.fetch_add(1, Ordering::Relaxed);
            state = self.sync.lock();
            state.syncing = false;
            match result {
                Ok(()) => state.synced_end = state.synced_end.max(target),
                Err(err) => {
                    state.poisoned.get_or_insert(format!("sync failed: {err}"));
                }
            }
            self.synced.notify_all();
        }
    }
}

impl Flusher {
    fn start<F: File + 'static>(inner: Arc<Inner<F>>, interval: Duration) -> Self {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stop_flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("pydb-wal-flusher".into())
            .spawn(move || {
                let (lock, cond) = &*stop_flag;
                let mut stopped = lock.lock();
                while !*stopped {
                    cond.wait_for(&mut stopped, interval);
                    drop(stopped);
                    let end = *inner.append_end.lock();
                    if let Err(err) = inner.sync_to(end) {
                        tracing::error!(%err, "periodic sync failed; the log is poisoned");
                        return;
                    }
                    stopped = lock.lock();
                }
            })
            .ok();
        Self { stop, handle }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        let (lock, cond) = &*self.stop;
        *lock.lock() = true;
        cond.notify_all();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl<F: File> Drop for LogWriter<F> {
    fn drop(&mut self) {
        // Stop the flusher first; it holds a reference to `inner`.
        self.flusher.take();
    }
}
