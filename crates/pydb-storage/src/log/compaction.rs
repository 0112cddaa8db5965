//! Compaction: giving back the space of overwritten and deleted records.
//!
//! An append-only log never overwrites, so every `set` of an existing key
//! and every `delete` leaves *dead* bytes behind. Compaction copies the live
//! records of the sealed segments into new segments and deletes the old
//! ones, while reads and writes go on.
//!
//! ## Steps
//!
//! 1. Under the writer mutex (briefly): reserve one segment id per input,
//!    then roll the active segment, so that every existing record is in a
//!    sealed segment and the new active segment gets an id above the
//!    reserved ones (the active segment must stay the highest id). The
//!    inputs are all sealed segments.
//! 2. Group the inputs, in seq order, so that each group's live bytes fit
//!    in one segment. Each group becomes one output that covers exactly the
//!    seq range of its inputs, so that every input lies inside exactly one
//!    output's range. (Seq order is usually id order, but not always: see
//!    "Ids out of seq order" below.)
//! 3. Without any engine lock: copy each record that the index still
//!    points at *exactly* (same segment and offset) into the output, byte
//!    for byte, seq included. Tombstones are dropped: every older value of
//!    their key is in the inputs, which are about to go. The output is
//!    written under a temp name with no fsync per record, then sealed,
//!    synced and given a hint file. The outputs are renamed into place in
//!    seq order, the directory synced after each rename.
//! 4. Re-point the index with a compare-and-set: a key moves to its copy
//!    only if the index still holds the location that was copied. A write
//!    that landed meanwhile wins, and its copy simply becomes dead.
//! 5. Delete the inputs, oldest (by seq) first, syncing the directory
//!    after each.
//!
//! ## Why oldest first
//!
//! The outputs hold no tombstones. Say key `k` was set in input A (seq 5)
//! and deleted in a newer input B (seq 9); neither is copied. If a crash
//! stopped the deletion after B but before A, reopening would find the set
//! of seq 5 and no tombstone: `k` would be back from the dead. Deleting
//! oldest first makes the surviving inputs always a *newer* suffix, and a
//! tombstone is always in the same or a newer input than the values it
//! hides, so it survives as long as they do. Reopening then finishes the
//! job: inputs lying inside an installed output's range are removed.
//!
//! That reopen rule alone would already hide the zombie (the old input lies
//! inside an output's range, so it is removed before anyone reads it). The
//! order is the second line of defence: it keeps every state a crash can
//! leave correct *by itself*, for any reader that replays the segments by
//! seq without knowing about compaction, such as `pydb inspect`.
//!
//! ## Ids out of seq order
//!
//! A crash between two renames of step 3 leaves the first outputs
//! installed and the later ones as temp files. Reopening deletes the temp
//! files and the inputs the installed outputs cover, and keeps the other
//! inputs: no data is lost, but those inputs now have *lower* ids than an
//! output that holds *older* seqs. So compaction never takes id order for
//! seq order: it sorts its inputs by seq range before grouping them (a
//! group in id order could span seqs that other groups hold, and its
//! output would claim a range it does not have: reopening would then find
//! seqs going backwards inside it, or a segment "covered" by an output that
//! does not hold its live records), and deletes them oldest seq first.
//!
//! The directory sync after each rename keeps the installed outputs a
//! prefix in seq order even across a power cut, which may persist renames
//! out of order. Were a newer output to survive alone, reopening would
//! delete its inputs (tombstones included) and keep the older inputs, whose
//! values those tombstones were hiding.
//!
//! ## What a reader sees
//!
//! A reader holds the location and an `Arc` of the segment taken under the
//! index read lock. If compaction re-points the key and deletes the segment
//! in the meantime, the read still goes to the old (unlinked, still open)
//! file and finds the same bytes, with the same seq.

use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use pydb_file::{File, FileOpener};
use pydb_index::Index;
use pydb_wal::{FILE_HEADER_LEN, LogWriter, Scanner, SyncPolicy, record_len};

use super::entry::{ENTRY_HEADER_LEN, EntryKind, decode_entry, encode_entry};
use super::hint::{self, HintEntry, HintHeader, PendingHint};
use super::{HintJob, Location, SegmentUsage, SeqRange, Shared, start_segment};
use crate::{Error, Result};

/// Copied records are appended in batches of about this many bytes.
const COPY_BATCH_BYTES: usize = 1 << 20;

/// Keys re-pointed per acquisition of the index write lock, so that
/// readers are never kept waiting for a whole compaction's worth.
const REPOINT_CHUNK: usize = 4096;

/// One output segment being planned: the inputs it replaces and the seq
/// range they cover.
#[derive(Debug)]
struct Group {
    inputs: Vec<u64>,
    range: SeqRange,
}

/// A written output segment.
#[derive(Debug)]
struct Output {
    id: u64,
    range: SeqRange,
    data_bytes: u64,
    /// Each copied key with its old and new location.
    moves: Vec<(Bytes, Location, Location)>,
}

/// Compacts every sealed segment. One compaction runs at a time; reads and
/// writes continue meanwhile.
pub(crate) fn compact<O, I>(shared: &Shared<O, I>) -> Result<()>
where
    O: FileOpener + 'static,
    I: Index<Location> + 'static,
{
    let _one_at_a_time = shared.compaction.lock();
    shared.check_poisoned()?;

    // 1. Seal everything; reserve ids below the new active segment.
    let (inputs, reserved, rolled) = {
        let mut writer = shared.writer.lock();
        if writer.sealed.is_empty() && !writer.active_has_data {
            return Ok(());
        }
        let count = writer.sealed.len() as u64 + 1;
        let reserved = shared.segments.reserve_ids(count)?;
        let rolled = shared.roll(&mut writer)?;
        let mut inputs: Vec<(u64, SeqRange)> =
            writer.sealed.iter().map(|(id, r)| (*id, *r)).collect();
        // Seq order, not id order: after a crash between two installs the
        // two differ (see the module docs).
        inputs.sort_by_key(|(id, range)| (range.first, range.last, *id));
        (inputs, reserved, rolled)
    };
    shared.write_hint(&rolled);

    // 2. Plan the outputs.
    let groups = plan(shared, &inputs);

    // 3. Copy.
    let mut outputs = Vec::with_capacity(groups.len());
    for (group, id) in groups.iter().zip(reserved) {
        match copy_group(shared, id, group) {
            Ok(output) => outputs.push(output),
            Err(err) => {
                discard(shared, outputs.iter().map(|o| o.id).chain([id]));
                return Err(err);
            }
        }
    }
    // From the first install on, a failure poisons: installed outputs the
    // engine does not know about would outlive their inputs' tombstones
    // once a later compaction dropped those (a resurrected key, or a
    // database that refuses to open). Reopening finishes the job instead.
    // One directory sync per install: the outputs become durable in seq
    // order, so a power cut can never keep a newer output (whose inputs
    // recovery then deletes, tombstones and all) without the older ones.
    for output in &outputs {
        shared.poison_on_error(|| {
            shared.segments.install(output.id)?;
            Ok(shared.segments.sync_dir()?)
        })?;
    }

    // 4. Re-point the index, a chunk at a time.
    for output in &outputs {
        shared.index.write().usage.insert(
            output.id,
            SegmentUsage {
                data_bytes: output.data_bytes,
                live_bytes: 0,
            },
        );
        for chunk in output.moves.chunks(REPOINT_CHUNK) {
            let mut state = shared.index.write();
            for (key, old, new) in chunk {
                if state.index.get(key) == Some(old) {
                    state.insert(key.clone(), *new);
                }
            }
        }
    }
    let input_ids: Vec<u64> = inputs.iter().map(|(id, _)| *id).collect();
    {
        let mut writer = shared.writer.lock();
        for id in &input_ids {
            writer.sealed.remove(id);
        }
        for output in &outputs {
            writer.sealed.insert(output.id, output.range);
        }
    }

    // 5. Delete the inputs, oldest (by seq) first (see the module docs).
    shared.poison_on_error(|| Ok(shared.segments.remove(&input_ids)?))?;
    {
        let mut state = shared.index.write();
        for id in &input_ids {
            state.usage.remove(id);
        }
    }
    for &id in &input_ids {
        hint::remove_hint(shared.segments.opener(), &shared.dir, id)?;
    }
    shared
        .compactions
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::debug!(
        inputs = input_ids.len(),
        outputs = outputs.len(),
        "compaction done"
    );
    Ok(())
}

/// Groups the inputs (in ascending seq order) so that
/// each group's live bytes fit in one segment. A group covers the seq range
/// from its first input's start to its last input's end.
fn plan<O, I>(shared: &Shared<O, I>, inputs: &[(u64, SeqRange)]) -> Vec<Group>
where
    O: FileOpener + 'static,
    I: Index<Location> + 'static,
{
    let live: Vec<u64> = {
        let state = shared.index.read();
        inputs
            .iter()
            .map(|(id, _)| state.usage.get(id).map_or(0, |u| u.live_bytes))
            .collect()
    };
    let framing = FILE_HEADER_LEN as u64 + 2 * record_len(ENTRY_HEADER_LEN);
    let mut groups: Vec<Group> = Vec::new();
    let mut size = 0;
    for (&(id, range), live) in inputs.iter().zip(live) {
        match groups.last_mut() {
            Some(group) if size + live <= shared.options.max_segment_size => {
                group.inputs.push(id);
                group.range.last = group.range.last.max(range.last);
                size += live;
            }
            _ => {
                groups.push(Group {
                    inputs: vec![id],
                    range,
                });
                size = framing + live;
            }
        }
    }
    groups
}

/// Writes the live records of a group's inputs into the output segment
/// `id`, under its temp name, sealed and synced, with its hint.
fn copy_group<O, I>(shared: &Shared<O, I>, id: u64, group: &Group) -> Result<Output>
where
    O: FileOpener + 'static,
    I: Index<Location> + 'static,
{
    let file = Arc::new(shared.segments.create_temp(id)?);
    // No fsync per append: the output is synced once, before it is renamed
    // into place, and until then a crash just leaves a temp file.
    let writer = start_segment(file, SyncPolicy::Never, group.range.first)?;
    let mut copier = Copier {
        output: id,
        pending: Vec::new(),
        pending_bytes: 0,
        moves: Vec::new(),
        data_bytes: 0,
    };
    for &input in &group.inputs {
        let segment = shared.segments.segment(input).ok_or_else(|| {
            Error::corrupted(
                shared.segments.segment_path(input),
                0,
                "compaction input vanished",
            )
        })?;
        let mut scanner = Scanner::new(&*segment)?;
        while let Some(batch) = scanner.next_batch()? {
            let state = shared.index.read();
            for record in batch {
                let entry = decode_entry(&record.payload)
                    .map_err(|e| Error::corrupted(segment.path(), record.offset, e.to_string()))?;
                if entry.kind != EntryKind::Set {
                    continue;
                }
                let old = Location {
                    segment: input,
                    offset: record.offset,
                    len: record.encoded_len() as u32,
                    seq: entry.seq,
                };
                if state.index.get(&entry.key) == Some(&old) {
                    copier.pending_bytes += record.payload.len();
                    copier.pending.push((entry.key, old, record.payload));
                }
            }
            drop(state);
            if copier.pending_bytes >= COPY_BATCH_BYTES {
                copier.flush(&writer)?;
            }
        }
    }
    copier.flush(&writer)?;
    let mut seal = Vec::new();
    encode_entry(group.range.last, EntryKind::Seal, b"", b"", &mut seal);
    writer.append_batch_unsynced(&[&seal])?;
    writer.sync()?;
    let header = HintHeader {
        segment_id: id,
        segment_len: writer.end(),
        first_seq: group.range.first,
        last_seq: group.range.last,
    };
    let entries: Vec<HintEntry> = copier
        .moves
        .iter()
        .map(|(key, _, new)| HintEntry {
            seq: new.seq,
            kind: EntryKind::Set,
            key: key.clone(),
            offset: new.offset,
            len: new.len,
        })
        .collect();
    shared.write_hint(&HintJob {
        header,
        entries: PendingHint::from_entries(&entries),
    });
    Ok(Output {
        id,
        range: group.range,
        data_bytes: copier.data_bytes,
        moves: copier.moves,
    })
}

/// Live records waiting to be appended to an output, and those appended.
struct Copier {
    output: u64,
    pending: Vec<(Bytes, Location, Bytes)>,
    pending_bytes: usize,
    moves: Vec<(Bytes, Location, Location)>,
    data_bytes: u64,
}

impl Copier {
    fn flush<F: File + 'static>(&mut self, writer: &LogWriter<Arc<F>>) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let payloads: Vec<&[u8]> = self.pending.iter().map(|(_, _, p)| p.as_ref()).collect();
        let appended = writer.append_batch_unsynced(&payloads)?;
        let mut offset = appended.start;
        for (key, old, _) in self.pending.drain(..) {
            let new = Location {
                segment: self.output,
                offset,
                ..old
            };
            offset += u64::from(old.len);
            self.data_bytes += u64::from(old.len);
            self.moves.push((key, old, new));
        }
        self.pending_bytes = 0;
        Ok(())
    }
}

/// Removes the temp files and hints of outputs that will not be installed.
fn discard<O, I>(shared: &Shared<O, I>, ids: impl Iterator<Item = u64>)
where
    O: FileOpener + 'static,
    I: Index<Location> + 'static,
{
    for id in ids {
        let _ = shared
            .segments
            .opener()
            .remove(&shared.segments.temp_path(id));
        let _ = hint::remove_hint(shared.segments.opener(), &shared.dir, id);
    }
}

/// The background compaction thread: checks the garbage ratio every
/// interval and compacts past the threshold.
#[derive(Debug)]
pub(crate) struct Compactor {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

impl Compactor {
    pub(crate) fn start<O, I>(shared: Arc<Shared<O, I>>) -> Self
    where
        O: FileOpener + 'static,
        I: Index<Location> + 'static,
    {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = Arc::clone(&stop);
        let interval = shared.options.compaction_interval;
        let handle = std::thread::Builder::new()
            .name("pydb-log-compactor".into())
            .spawn(move || {
                let (lock, cond) = &*signal;
                let mut stopped = lock.lock();
                loop {
                    cond.wait_for(&mut stopped, interval);
                    if *stopped {
                        return;
                    }
                    drop(stopped);
                    if shared.needs_compaction()
                        && let Err(err) = compact(&shared)
                    {
                        tracing::warn!(%err, "background compaction failed");
                    }
                    stopped = lock.lock();
                }
            })
            .inspect_err(|err| tracing::error!(%err, "could not start the compaction thread"))
            .ok();
        Self { stop, handle }
    }
}

impl Drop for Compactor {
    fn drop(&mut self) {
        let (lock, cond) = &*self.stop;
        *lock.lock() = true;
        cond.notify_all();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
