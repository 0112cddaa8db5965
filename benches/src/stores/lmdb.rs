//! LMDB (through heed): a copy-on-write B+tree in a memory-mapped file.
//!
//! Configured as LMDB's documentation describes: the unnamed database with
//! byte keys and values, one write transaction per benchmark call, a read
//! transaction per read. The map size (LMDB's fixed upper bound on the file)
//! is set well above what the workload writes. When every write must be
//! durable, LMDB's default flags are used (each commit syncs data and meta
//! page); otherwise `NO_SYNC | NO_META_SYNC`, LMDB's documented relaxed mode,
//! with `force_sync` as the flush. `WRITE_MAP` is left off, as LMDB advises
//! unless the application trusts itself not to write through stray
//! pointers. LMDB has no cache of its own: it reads through the OS page
//! cache.

use std::ops::Bound;
use std::path::Path;

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions};

use super::{Handle, Result, Store, StoreConfig, StoreKind, WriteMode};

pub const KIND: StoreKind = StoreKind {
    name: "lmdb",
    persistent: true,
    open,
    settings: |c| {
        format!(
            "heed, txn per call, {}, map size {} MiB, no WRITE_MAP",
            match c.mode {
                WriteMode::Synced => "default flags (sync on commit)",
                WriteMode::Unsynced => "NO_SYNC|NO_META_SYNC, flush = force_sync",
            },
            map_size(c) >> 20
        )
    },
};

/// LMDB's map must hold the whole database plus the pages a copy-on-write
/// tree keeps while it rewrites; eight times the user data, and at least
/// 1 GiB, leaves ample room. It costs only address space.
fn map_size(config: &StoreConfig) -> usize {
    let want = config.data_bytes_hint.saturating_mul(8).max(1 << 30);
    // Round up to a multiple of the largest common page size, as LMDB asks.
    let page = 64 * 1024;
    usize::try_from(want.div_ceil(page) * page).unwrap_or(usize::MAX / 2)
}

#[expect(
    unsafe_code,
    reason = "heed marks opening an LMDB environment and its sync flags unsafe"
)]
fn open(dir: &Path, config: &StoreConfig) -> Result<Box<dyn Store>> {
    let mut options = EnvOpenOptions::new();
    options.map_size(map_size(config));
    if config.mode == WriteMode::Unsynced {
        // SAFETY: NO_SYNC and NO_META_SYNC only weaken durability after an
        // OS crash, which is exactly what the unsynced workloads allow; the
        // flush calls force_sync before the benchmark relies on the data.
        unsafe {
            options.flags(EnvFlags::NO_SYNC | EnvFlags::NO_META_SYNC);
        }
    }
    // SAFETY: the directory is private to this benchmark run and this
    // process opens it once at a time; nothing else maps or modifies the
    // file while the environment is open.
    let env = unsafe { options.open(dir)? };
    let wtxn = env.write_txn()?;
    let db = env
        .create_databases_and_commit(wtxn, |opener, wtxn| -> Result<_, heed::Error> {
            let db = opener.create_database::<Bytes, Bytes>(wtxn, None)?;
            Ok(CommitOrAbort::<_, ()>::Commit(db))
        })?
        .unwrap_commit();
    Ok(Box::new(LmdbStore { env, db }))
}

struct LmdbStore {
    env: Env,
    db: Database<'static, Bytes, Bytes>,
}

impl Store for LmdbStore {
    fn handle(&self) -> Result<Box<dyn Handle + '_>> {
        Ok(Box::new(LmdbHandle { store: self }))
    }

    fn flush(&self) -> Result<()> {
        Ok(self.env.force_sync()?)
    }
}

struct LmdbHandle<'a> {
    store: &'a LmdbStore,
}

impl Handle for LmdbHandle<'_> {
    fn transfer(&mut self, a: &[u8], b: &[u8]) -> Result<u64> {
        // LMDB has one writer at a time (the write transaction's lock).
        let mut txn = self.store.env.write_txn()?;
        let va = self.store.db.get(&txn, a)?.map(<[u8]>::to_vec);
        let vb = self.store.db.get(&txn, b)?.map(<[u8]>::to_vec);
        self.store.db.put(&mut txn, a, &vb.unwrap_or_default())?;
        self.store.db.put(&mut txn, b, &va.unwrap_or_default())?;
        txn.commit()?;
        Ok(0)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut txn = self.store.env.write_txn()?;
        self.store.db.put(&mut txn, key, value)?;
        txn.commit()?;
        Ok(())
    }

    fn put_batch(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut txn = self.store.env.write_txn()?;
        for (k, v) in pairs {
            self.store.db.put(&mut txn, k, v)?;
        }
        txn.commit()?;
        Ok(())
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<usize>> {
        let txn = self.store.env.read_txn()?;
        Ok(self
            .store
            .db
            .get(&txn, key)?
            .map(|v| std::hint::black_box(v).len()))
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
        let mut txn = self.store.env.write_txn()?;
        self.store.db.delete(&mut txn, key)?;
        txn.commit()?;
        Ok(())
    }

    fn scan(&mut self, start: &[u8], limit: usize) -> Result<usize> {
        let txn = self.store.env.read_txn()?;
        let range: (Bound<&[u8]>, Bound<&[u8]>) = (Bound::Included(start), Bound::Unbounded);
        let mut read = 0;
        for item in self.store.db.range(&txn, &range)?.take(limit) {
            let (_, v) = item?;
            std::hint::black_box(v);
            read += 1;
        }
        Ok(read)
    }

    fn scan_all(&mut self, each: &mut dyn FnMut(usize)) -> Result<()> {
        let txn = self.store.env.read_txn()?;
        for item in self.store.db.iter(&txn)? {
            let (_, v) = item?;
            each(v.len());
        }
        Ok(())
    }
}
