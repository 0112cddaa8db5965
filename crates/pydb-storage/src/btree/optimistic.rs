//! Optimistic reads (lookups and cursor refills): a sequence lock over the
//! committed tree.
//!
//! A lookup used to take the tree lock (a `RwLock`) shared, so that no
//! batch could be installed while it walked from the root to a leaf: a
//! reader that saw a parent from before a split and its child from after
//! it would miss a key that is there. Taking a shared lock is two atomic
//! read-modify-writes on one cache line that *every* reader shares, and at
//! four threads that line bounces between cores on every `get`.
//!
//! [`Published`] replaces the lock for lookups with a *sequence lock*
//! (seqlock, as in the Linux kernel; LeanStore and Umbra apply the same
//! "optimistic latching" to each page). The writer, which holds the tree
//! lock for writing anyway, makes the sequence number odd before it
//! installs a batch and even again after; the reader does no write at all:
//!
//! ```text
//!  writer (under the tree lock)        reader (no lock)
//!  seq = 2k + 1                        s1 = seq            (odd: use the lock)
//!  install pages, publish the meta     meta = published meta
//!  seq = 2k + 2                        look the key up from meta.root
//!                                      s2 = seq            (s1 != s2: try again)
//! ```
//!
//! If the sequence number did not move, no install overlapped the lookup,
//! so every page it read belonged to the same committed tree: the answer
//! is exactly what a reader under the lock would have got. If it moved, the
//! answer (a value, "not found" or an error, since a parent from one batch
//! and a child from the next can look like corruption) is thrown away and
//! the lookup runs again; after a few failed tries it takes the lock, so a
//! busy writer cannot starve a reader.
//!
//! A cursor's refill runs the same way ([`Published::read`]), and keeps
//! the number it ran under: if the next refill finds the same number, no
//! batch was installed in between, so the sibling link the last refill
//! noted still points at the next leaf, and the cursor hops there instead
//! of descending from the root again. See `tree.rs`, "Readers".
//!
//! ## Why this is safe in Rust (and why not per page)
//!
//! Pages are still read under their frame's read latch (see
//! [`pool`](super::pool)), so a reader never sees a page half-copied: what
//! the seqlock validates is that the *set* of pages belongs to one version
//! of the tree. The meta fields are atomics, read with `Acquire`. Reading
//! the page bytes themselves without the latch (LeanStore's per-page
//! version check) would race with the writer's `memcpy`, which Rust's
//! memory model forbids for plain bytes; it would need the page held as
//! atomic words and every page decoder rewritten over them.
//!
//! Memory ordering: the writer stores the odd number, then issues a
//! release fence, then writes; the reader's `Acquire` load of any value
//! written after that fence (a meta word, or a page through its latch)
//! makes the odd store visible to its second load of the sequence number,
//! so a lookup that saw anything of a batch always sees the number move.

use std::sync::atomic::{AtomicU64, Ordering, fence};

use super::meta::TreeMeta;

/// Tries of an optimistic lookup before it takes the tree lock.
pub const OPTIMISTIC_TRIES: usize = 3;

/// The committed tree's meta fields behind a sequence number.
#[derive(Debug, Default)]
pub struct Published {
    /// Even when stable, odd while a batch is being installed.
    seq: AtomicU64,
    /// `TreeMeta` packed into words: (root, height), (free head, free
    /// count), page count, keys, live bytes.
    words: [AtomicU64; 5],
}

/// What a reader saw when it started: the sequence number and the meta.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    seq: u64,
    /// The committed meta, as of `seq` (valid only if `validate` agrees).
    pub meta: TreeMeta,
}

fn pair(lo: u32, hi: u32) -> u64 {
    u64::from(lo) | (u64::from(hi) << 32)
}

fn split(word: u64) -> (u32, u32) {
    (word as u32, (word >> 32) as u32)
}

impl Published {
    /// A sequence lock publishing `meta`.
    pub fn new(meta: &TreeMeta) -> Self {
        let published = Self::default();
        published.store(meta);
        published
    }

    fn store(&self, meta: &TreeMeta) {
        let values = [
            pair(meta.root, meta.height),
            pair(meta.free_head, meta.free_count),
            u64::from(meta.page_count),
            meta.keys,
            meta.live_bytes,
        ];
        for (word, value) in self.words.iter().zip(values) {
            word.store(value, Ordering::Release);
        }
    }

    /// Marks the start of an install (the sequence number turns odd). The
    /// caller holds the tree lock for writing: one writer at a time.
    pub fn begin_write(&self) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
    }

    /// Publishes `meta` and marks the end of the install (the sequence
    /// number turns even again).
    pub fn end_write(&self, meta: &TreeMeta) {
        self.store(meta);
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Release);
    }

    /// The meta as of now, or `None` while an install is under way.
    pub fn begin_read(&self) -> Option<Snapshot> {
        let seq = self.seq.load(Ordering::Acquire);
        if seq % 2 == 1 {
            return None;
        }
        let w: [u64; 5] = std::array::from_fn(|i| self.words[i].load(Ordering::Acquire));
        let (root, height) = split(w[0]);
        let (free_head, free_count) = split(w[1]);
        Some(Snapshot {
            seq,
            meta: TreeMeta {
                root,
                height,
                free_head,
                free_count,
                page_count: w[2] as u32,
                keys: w[3],
                live_bytes: w[4],
            },
        })
    }

    /// Whether no install started since `snap` was taken: if so, what was
    /// read in between belongs to one committed tree.
    pub fn validate(&self, snap: &Snapshot) -> bool {
        fence(Ordering::Acquire);
        self.seq.load(Ordering::Relaxed) == snap.seq
    }

    /// Runs `read` against one committed tree and returns what it
    /// returned: optimistically up to [`OPTIMISTIC_TRIES`] times (a run
    /// that an install overlapped is thrown away, errors included), then
    /// under `tree`, the tree lock. `read` gets the meta and the sequence
    /// number of the tree it runs on: two runs that got the same number
    /// saw the same tree, which is how a cursor knows that a sibling link
    /// it read in one refill is still good in the next.
    ///
    /// `read` may run several times, so it must not change anything the
    /// caller keeps unless it is about to return (scratch space is fine).
    pub fn read<T>(
        &self,
        tree: &parking_lot::RwLock<TreeMeta>,
        mut read: impl FnMut(&TreeMeta, u64) -> T,
    ) -> T {
        for _ in 0..OPTIMISTIC_TRIES {
            let Some(snap) = self.begin_read() else {
                break; // an install is under way: wait for it on the lock
            };
            let result = read(&snap.meta, snap.seq);
            if self.validate(&snap) {
                return result;
            }
        }
        let meta = tree.read();
        // Installs change the number under the tree lock held for writing,
        // so under the read lock it is even and stays put.
        let seq = self.seq.load(Ordering::Acquire);
        read(&meta, seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btree::{BTreeOptions, BTreeStorage, SyncPolicy};
    use crate::engine::{StorageEngine, WriteBatch};
    use std::sync::atomic::AtomicBool;

    fn meta(n: u32) -> TreeMeta {
        TreeMeta {
            root: n,
            height: n + 1,
            free_head: n + 2,
            free_count: n + 3,
            page_count: n + 4,
            keys: u64::from(n) << 40,
            live_bytes: u64::from(n) << 33,
        }
    }

    #[test]
    fn a_read_across_an_install_does_not_validate() {
        let p = Published::new(&meta(7));
        let snap = p.begin_read().unwrap();
        assert_eq!(snap.meta, meta(7));
        assert!(p.validate(&snap));
        p.begin_write();
        // While the install runs, readers are told to use the lock.
        assert!(p.begin_read().is_none());
        p.end_write(&meta(9));
        assert!(!p.validate(&snap));
        let snap = p.begin_read().unwrap();
        assert_eq!(snap.meta, meta(9));
        assert!(p.validate(&snap));
    }

    const KEYS: u32 = 300;

    fn key(k: u32) -> Vec<u8> {
        format!("key{k:06}").into_bytes()
    }

    /// Version `v` of key `k`: odd versions are "deleted", even ones a
    /// value that names the key and the version, long enough (30 to 230
    /// bytes) that rewrites split and merge 512-byte pages.
    fn value(k: u32, v: u64) -> Option<Vec<u8>> {
        if v % 2 == 1 {
            return None;
        }
        let mut out = format!("{k}:{v}:").into_bytes();
        out.resize(30 + ((u64::from(k) * 7 + v * 13) % 200) as usize, b'x');
        Some(out)
    }

    #[test]
    fn optimistic_lookups_racing_splits_merges_and_evictions_match_the_model() {
        // A writer moves every key through versions (present, deleted,
        // present with another length...), in batches, while three readers
        // look keys up (by `get` and `get_with` in turn). Per key the writer records the version it started
        // writing and the version it finished: a lookup must return exactly
        // one of the versions between the finished one seen before it and
        // the started one seen after it. With 16 frames of 512 bytes nearly
        // every descent also meets evictions.
        let dir = tempfile::tempdir().unwrap();
        let engine = BTreeStorage::open(
            dir.path(),
            BTreeOptions {
                sync: SyncPolicy::Never,
                pool_bytes: 16 * 512,
                page_size: 512,
                ..BTreeOptions::default()
            },
        )
        .unwrap();
        let begun: Vec<AtomicU64> = (0..KEYS).map(|_| AtomicU64::new(0)).collect();
        let done: Vec<AtomicU64> = (0..KEYS).map(|_| AtomicU64::new(0)).collect();
        for k in 0..KEYS {
            engine.set(&key(k), &value(k, 0).unwrap()).unwrap();
        }
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let readers: Vec<_> = (0..3u32)
                .map(|t| {
                    let (engine, begun, done, stop) = (&engine, &begun, &done, &stop);
                    s.spawn(move || {
                        let mut x = 0x9e37_79b9u32.wrapping_mul(t + 1);
                        let mut reads = 0u64;
                        while !stop.load(Ordering::Relaxed) || reads < 1000 {
                            x ^= x << 13;
                            x ^= x >> 17;
                            x ^= x << 5;
                            let k = x % KEYS;
                            let lo = done[k as usize].load(Ordering::SeqCst);
                            // Every other read through the borrowing read,
                            // whose optimistic copy must also be one version.
                            let got = if reads.is_multiple_of(2) {
                                engine.get(&key(k)).unwrap().map(|b| b.to_vec())
                            } else {
                                let (mut lent, mut visits) = (None, 0);
                                let found = engine
                                    .get_with(&key(k), &mut |v| {
                                        lent = Some(v.to_vec());
                                        visits += 1;
                                    })
                                    .unwrap();
                                assert_eq!(visits, usize::from(found), "key {k}");
                                lent
                            };
                            let hi = begun[k as usize].load(Ordering::SeqCst);
                            assert!(
                                (lo..=hi).any(|v| value(k, v) == got),
                                "key {k}: read {got:?}, versions {lo}..={hi}"
                            );
                            reads += 1;
                        }
                    })
                })
                .collect();
            let mut x = 12345u32;
            for round in 0..1500u32 {
                let mut batch = WriteBatch::new();
                let mut touched = Vec::new();
                for _ in 0..1 + round % 4 {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    let k = x % KEYS;
                    if touched.contains(&k) {
                        continue;
                    }
                    touched.push(k);
                    let v = begun[k as usize].load(Ordering::SeqCst) + 1;
                    begun[k as usize].store(v, Ordering::SeqCst);
                    match value(k, v) {
                        Some(val) => {
                            batch.set(key(k), val);
                        }
                        None => {
                            batch.delete(key(k));
                        }
                    }
                }
                engine.write_batch(&batch).unwrap();
                for k in touched {
                    let v = begun[k as usize].load(Ordering::SeqCst);
                    done[k as usize].store(v, Ordering::SeqCst);
                }
            }
            stop.store(true, Ordering::Relaxed);
            for r in readers {
                r.join().unwrap();
            }
        });
        let stats = engine.pool_stats();
        assert!(stats.evictions > 0, "{stats:?}");
        for k in 0..KEYS {
            let v = done[k as usize].load(Ordering::SeqCst);
            assert_eq!(
                engine.get(&key(k)).unwrap().map(|b| b.to_vec()),
                value(k, v)
            );
        }
    }
}
