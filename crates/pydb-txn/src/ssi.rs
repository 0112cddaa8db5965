//! Serializable snapshot isolation: the bookkeeping of read-write
//! dependencies (Cahill, Röhm and Fekete 2008; Ports and Grittner 2012).
//!
//! Snapshot isolation already forbids two concurrent transactions from
//! writing the same key. What it lets through is *write skew*: T1 reads x
//! and writes y, T2 reads y and writes x, and neither sees the other's
//! write. Each read of a key that a concurrent transaction overwrites is a
//! **rw-antidependency** `reader -rw-> writer`: in any equivalent serial
//! order the reader must come first. Two of them in opposite directions
//! make a cycle, and no serial order exists.
//!
//! Every cycle of a non-serializable snapshot-isolation history contains a
//! **dangerous structure**: two consecutive rw-antidependencies
//! `T1 -rw-> T2 -rw-> T3` between concurrent transactions, where `T2` is
//! called the *pivot* (T1 and T3 may be the same transaction). Ports and
//! Grittner add that `T3` must commit first among the three. We abort a
//! transaction whenever such a structure would form; some of those aborts
//! are false positives (the cycle may never close), which is the price of
//! not tracking the whole graph.
//!
//! ## What is tracked
//!
//! - Each serializable transaction publishes its **reads** while it runs:
//!   the keys it read (found, missing or deleted alike) and the ranges it
//!   scanned (empty ones too). Those are PostgreSQL's SIREAD locks; they
//!   outlive the transaction until no concurrent transaction is left.
//!   One read is left out: an insert's check of a key it then writes
//!   (`Transaction::insert_owned_in`), since the write-write check already
//!   refuses whichever of it and a concurrent writer of that key commits
//!   second, so the rw-antidependency the read would record can never be
//!   part of a committed cycle.
//! - At commit a transaction's **writes** are known, and the check runs
//!   under the commit mutex, so checks are totally ordered:
//!   1. *out-edges* `T -rw-> W`: W committed after T's snapshot and wrote
//!      something T read;
//!   2. *in-edges* `R -rw-> T`: R is concurrent with T (still running, or
//!      committed after T's snapshot) and read something T writes.
//! - Each transaction keeps two flags, `in_conflict` and `out_conflict`.
//!
//! ## When to abort
//!
//! - **T is a pivot**: it would commit with both an in- and an out-edge.
//!   Its out-edges point at transactions that committed before it, so T3
//!   committed first: abort T.
//! - **T is a T1**: an out-edge `T -> W` where the committed W already has
//!   an out-edge (to a transaction that committed before W): abort T.
//! - **T is a T3** whose in-edge comes from a reader R that is itself a
//!   pivot: if R already committed, R committed before T, so T3 was not
//!   first and nothing is needed. A *running* R cannot have an in-edge yet
//!   (others learn its writes only when it commits), so its pivot check
//!   happens at its own commit, by the first rule. The code still dooms a
//!   running R in that position (its next operation fails), as a guard
//!   should in-edges ever be found earlier (e.g. by write locks).
//!
//! A read-only transaction that began when no running transaction had an
//! older snapshot is not tracked at all (PostgreSQL's *safe snapshot*; the
//! proof is at `Transaction::begin`): an autocommitted `SELECT` on a quiet
//! database costs no bookkeeping.
//!
//! Only serializable transactions are tracked; as in PostgreSQL, a
//! snapshot or read-committed transaction mixed in gets its own level's
//! guarantees and is not part of anyone's dependency graph.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use pydb_storage::KeyRange;

use crate::keys::{describe_key, describe_range};

/// What a serializable transaction read, shared with the tracker.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    keys: BTreeSet<Bytes>,
    ranges: Vec<KeyRange>,
}

impl Reads {
    /// A description of what of `key` this read set covers, if anything.
    fn covers(&self, key: &[u8]) -> Option<String> {
        if self.keys.contains(key) {
            return Some(format!("key {}", describe_key(key)));
        }
        self.ranges.iter().find(|r| r.contains(key)).map(|r| {
            format!(
                "key {} in the scanned {}",
                describe_key(key),
                describe_range(r)
            )
        })
    }

    /// The first of `writes` this read set covers, described.
    fn overlap(&self, writes: &WrittenKeys) -> Option<String> {
        writes.iter().find_map(|k| self.covers(k))
    }
}

/// The spaced keys a serializable transaction wrote, ascending, packed
/// end to end in one buffer: what its tracker entry keeps after commit.
///
/// Why packed: the keys must outlive the write buffer (the entry stays
/// until no concurrent transaction is left, see [`Tracker::prune`]), and
/// keeping a share of each buffered key's `Bytes` cost an allocation per
/// key (the first share of a key made from a `Vec` allocates its reference
/// count) and a release per key when the entry was pruned: about 1,000
/// instructions of every SQL row inserted. A copy of the key bytes into
/// one buffer costs a few instructions per byte and two allocations per
/// commit. The keys are only ever read in order, one after another.
#[derive(Debug, Default)]
pub(crate) struct WrittenKeys {
    /// The keys, end to end.
    bytes: Vec<u8>,
    /// Where each key ends in `bytes` (so key `i` is
    /// `bytes[ends[i - 1]..ends[i]]`, from 0 for the first).
    ends: Vec<usize>,
}

impl WrittenKeys {
    /// Copies `keys` (ascending) into one buffer, sized exactly.
    #[cfg(test)]
    pub(crate) fn copied<'k, I>(keys: I) -> Self
    where
        I: ExactSizeIterator<Item = &'k [u8]> + Clone,
    {
        let len = keys.clone().map(<[u8]>::len).sum();
        Self::copied_sized(keys, len)
    }

    /// [`WrittenKeys::copied`] of keys whose lengths add up to `len`
    /// (the commit sums them on its pass for the fingerprints, which
    /// saves a pass over the write buffer).
    pub(crate) fn copied_sized<'k, I>(keys: I, len: usize) -> Self
    where
        I: ExactSizeIterator<Item = &'k [u8]>,
    {
        let mut written = Self {
            bytes: Vec::with_capacity(len),
            ends: Vec::with_capacity(keys.len()),
        };
        for key in keys {
            written.bytes.extend_from_slice(key);
            written.ends.push(written.bytes.len());
        }
        written
    }

    /// Whether no key was written.
    pub(crate) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The keys, in the order they were given.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            // In bounds: `ends` ascends and its last is `bytes.len()`.
            let key = &self.bytes[start..end];
            start = end;
            key
        })
    }
}

/// The part of a serializable transaction's state that others touch.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    reads: Mutex<Reads>,
    /// Set when a committing transaction dooms this one; the reason.
    doomed: Mutex<Option<String>>,
}

impl Shared {
    pub(crate) fn read_key(&self, key: &[u8]) {
        let mut reads = self.reads.lock();
        if !reads.keys.contains(key) {
            reads.keys.insert(Bytes::copy_from_slice(key));
        }
    }

    /// Records a scan of `range` (spaced bounds).
    pub(crate) fn read_range(&self, range: KeyRange) {
        self.reads.lock().ranges.push(range);
    }

    pub(crate) fn doomed(&self) -> Option<String> {
        self.doomed.lock().clone()
    }
}

/// One tracked transaction.
#[derive(Debug)]
struct Entry {
    id: u64,
    snapshot: u64,
    shared: Arc<Shared>,
    /// Set once committed, with what it wrote (sorted).
    committed: Option<(u64, WrittenKeys)>,
    in_conflict: bool,
    out_conflict: bool,
}

/// The tracker: running and recently committed serializable transactions.
/// Lives under the manager's commit mutex.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    entries: Vec<Entry>,
}

/// Why a commit must abort.
pub(crate) type Abort = String;

impl Tracker {
    pub(crate) fn register(&mut self, id: u64, snapshot: u64) -> Arc<Shared> {
        let shared = Arc::new(Shared::default());
        self.entries.push(Entry {
            id,
            snapshot,
            shared: Arc::clone(&shared),
            committed: None,
            in_conflict: false,
            out_conflict: false,
        });
        shared
    }

    /// Forgets a transaction that rolled back.
    pub(crate) fn forget(&mut self, id: u64) {
        self.entries.retain(|e| e.id != id);
    }

    /// Forgets committed transactions no running or future transaction is
    /// concurrent with: those that committed at or before `oldest_snapshot`.
    pub(crate) fn prune(&mut self, oldest_snapshot: u64) {
        self.entries.retain(|e| {
            e.committed
                .as_ref()
                .is_none_or(|(ts, _)| *ts > oldest_snapshot)
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Runs the SSI check for `id` committing `writes` (sorted), and on
    /// success records the edges and marks it committed at `commit_ts`.
    /// `commit_ts` is the timestamp the commit will get (for a read-only
    /// transaction, one past the last assigned).
    pub(crate) fn commit(
        &mut self,
        id: u64,
        writes: WrittenKeys,
        commit_ts: u64,
    ) -> Result<(), Abort> {
        let Some(me) = self.entries.iter().position(|e| e.id == id) else {
            return Ok(());
        };
        let snapshot = self.entries[me].snapshot;
        if let Some(reason) = self.entries[me].shared.doomed() {
            return Err(reason);
        }
        let mut outs = Vec::new(); // (index of W, what)
        let mut ins = Vec::new(); // (index of R, what)
        {
            let my_reads = self.entries[me].shared.reads.lock();
            for (i, other) in self.entries.iter().enumerate() {
                if i == me {
                    continue;
                }
                match &other.committed {
                    Some((ts, their_writes)) if *ts > snapshot => {
                        if let Some(what) = my_reads.overlap(their_writes) {
                            outs.push((i, what));
                        }
                        if let Some(what) = other.shared.reads.lock().overlap(&writes) {
                            ins.push((i, what));
                        }
                    }
                    Some(_) => {}
                    None => {
                        if let Some(what) = other.shared.reads.lock().overlap(&writes) {
                            ins.push((i, what));
                        }
                    }
                }
            }
        }
        let entry = &self.entries[me];
        let has_in = entry.in_conflict || !ins.is_empty();
        let has_out = entry.out_conflict || !outs.is_empty();
        if has_in && has_out {
            let inbound = match ins.first() {
                Some((i, what)) => format!(
                    "transaction {} read {what}, which it writes",
                    self.entries[*i].id
                ),
                None => "an earlier committed transaction read what it writes".to_string(),
            };
            let outbound = match outs.first() {
                Some((i, what)) => {
                    format!(
                        "it read {what}, which transaction {} overwrote",
                        self.entries[*i].id
                    )
                }
                None => "it read what a concurrent transaction overwrote".to_string(),
            };
            return Err(format!(
                "it would be the pivot of a dangerous structure: {inbound}, and {outbound}"
            ));
        }
        for (i, what) in &outs {
            if self.entries[*i].out_conflict {
                return Err(format!(
                    "it read {what}, overwritten by transaction {}, which itself read data a transaction committed before it overwrote (dangerous structure)",
                    self.entries[*i].id
                ));
            }
        }
        // The commit goes through: record the edges.
        for (i, _) in &outs {
            self.entries[*i].in_conflict = true;
        }
        for (i, what) in &ins {
            let reader = &mut self.entries[*i];
            reader.out_conflict = true;
            if reader.committed.is_none() && reader.in_conflict {
                *reader.shared.doomed.lock() = Some(format!(
                    "it became the pivot of a dangerous structure: it read {what}, which transaction {id} overwrote and committed first, and another transaction depends on its own writes",
                ));
            }
        }
        let read_only = writes.is_empty();
        let entry = &mut self.entries[me];
        entry.in_conflict = has_in;
        entry.out_conflict = has_out;
        entry.committed = Some((commit_ts, writes));
        if read_only {
            self.merge_reader(me, commit_ts);
        }
        Ok(())
    }

    /// Folds the committed read-only entry at `me` into another committed
    /// read-only entry with the same commit timestamp, if there is one.
    ///
    /// Why this is exact: a committed transaction that wrote nothing is
    /// never the target of an out-edge (nobody can read what it wrote), so
    /// its two flags are never looked at again; all it still does is give
    /// a later writer an in-edge when that writer overwrites something it
    /// read. That answer depends only on its reads and its commit
    /// timestamp (which decides whether it is concurrent with the writer,
    /// and when it is pruned). Two such entries with one timestamp answer
    /// exactly like one entry holding both read sets.
    ///
    /// Why it matters: a read-only commit takes the timestamp after the
    /// last one handed out, which stays above every running snapshot until
    /// the next write commits, so [`Tracker::prune`] cannot drop it. A long
    /// run of read-only statements (a `SELECT` loop outside `BEGIN`) would
    /// otherwise pile up one entry each, and every commit looks at every
    /// entry: each statement would cost more than the one before.
    fn merge_reader(&mut self, me: usize, commit_ts: u64) {
        let into = self.entries.iter().position(|e| {
            e.id != self.entries[me].id
                && e.committed
                    .as_ref()
                    .is_some_and(|(ts, w)| *ts == commit_ts && w.is_empty())
        });
        let Some(into) = into else {
            return;
        };
        let mine = std::mem::take(&mut *self.entries[me].shared.reads.lock());
        {
            let mut theirs = self.entries[into].shared.reads.lock();
            theirs.keys.extend(mine.keys);
            theirs.ranges.extend(mine.ranges);
        }
        let (in_conflict, out_conflict) =
            (self.entries[me].in_conflict, self.entries[me].out_conflict);
        let target = &mut self.entries[into];
        target.in_conflict |= in_conflict;
        target.out_conflict |= out_conflict;
        self.entries.swap_remove(me);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_keys_give_back_each_key_whole_and_in_order() {
        // Keys that are prefixes of each other: a wrong boundary would
        // merge or cut them.
        let keys: [&[u8]; 4] = [b"\x02a", b"\x02ab", b"\x02abc", b"\x02b\x00"];
        let written = WrittenKeys::copied(keys.iter().copied());
        assert!(!written.is_empty());
        assert_eq!(written.iter().collect::<Vec<_>>(), keys);
        assert!(WrittenKeys::copied(std::iter::empty()).is_empty());
    }

    #[test]
    fn a_committed_write_is_found_in_a_concurrent_readers_keys_and_ranges() {
        let mut tracker = Tracker::default();
        let reader = tracker.register(1, 10);
        reader.read_key(b"\x02ab");
        tracker.register(2, 10);
        // The writer writes "ab" among other keys, which the running
        // reader read: an in-edge of the writer, found through its keys.
        let writes = [&b"\x02a"[..], b"\x02ab", b"\x02b"];
        tracker
            .commit(2, WrittenKeys::copied(writes.iter().copied()), 11)
            .expect("a writer with no in- or out-edge commits");
        assert!(tracker.entries.iter().any(|e| e.id == 2 && e.in_conflict));
        // And a key it did not write is not found.
        let mut other = Tracker::default();
        let reader = other.register(1, 10);
        reader.read_key(b"\x02abc");
        other.register(2, 10);
        other
            .commit(2, WrittenKeys::copied(writes.iter().copied()), 11)
            .expect("commits");
        assert!(other.entries.iter().all(|e| !e.in_conflict));
    }
}
