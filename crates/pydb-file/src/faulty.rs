//! Fault injection: files that fail on purpose, and a simulated power cut.
//!
//! A database earns trust by surviving what disks and kernels really do:
//! a write that fails, a disk that fills up, a write torn in the middle, an
//! `fsync` that errors, a machine that loses power with dirty pages in the
//! cache. [`FaultyFile`] wraps any [`File`] and [`FaultyOpener`] any
//! [`FileOpener`]; every file they hand out reports to one shared
//! [`FaultController`], which decides, deterministically from a `u64` seed,
//! when an operation fails, and which keeps enough history to undo every
//! byte that was not yet durable when [`FaultController::power_cut`] is
//! called.
//!
//! ## What is simulated
//!
//! - **I/O errors** on read, write (`write_at`, `append`), `set_len`,
//!   `sync_data` and directory sync: the Nth operation of a kind
//!   ([`FaultController::fail_nth`]) or each one with a probability
//!   ([`FaultController::fail_with_probability`]). A failed operation does
//!   nothing.
//! - **Torn writes** ([`FaultController::tear_nth_write`]): a strict prefix
//!   of the bytes (its length drawn from the seed) reaches the file, then
//!   the write fails.
//! - **Disk full** ([`FaultController::set_space_left`]): a budget of bytes
//!   by which files may still grow. A write that would grow past it writes
//!   the prefix that fits and fails with [`std::io::ErrorKind::StorageFull`],
//!   like `write(2)` returning a short count and then `ENOSPC`. Overwriting
//!   bytes in place costs nothing; shrinking with `set_len` gives space
//!   back; raising the budget again lets writes continue.
//! - **Power cut** ([`FaultController::power_cut`]): every file opened
//!   through the controller goes back to its last-synced state. Per file the
//!   controller keeps the synced length and an undo log of the old bytes
//!   that unsynced `write_at`/`set_len` calls overwrote or cut off inside the
//!   synced length, so appends, in-place page writes and truncations are all
//!   undone. Afterwards every handle and opener of that controller fails
//!   (the process died); a test reopens the directory with a fresh opener.
//! - **Directory durability**: a file created through the opener disappears
//!   at a power cut unless [`FileOpener::sync_dir`] ran on its directory
//!   since; a file removed through the opener disappears at once but comes
//!   back (with its last-synced contents) at a power cut before the next
//!   `sync_dir`. Until then it waits in a hidden `.faulty-removed/`
//!   subdirectory, which is deleted when empty.
//! - **A lying `fsync`** ([`FaultController::set_lying_sync_after_failure`]):
//!   after a failed sync, later syncs of that file report success but make
//!   nothing durable, as when the kernel drops dirty pages after a write-back
//!   error and clears the error ("fsyncgate"). This is why `pydb-wal`
//!   poisons itself after a failed sync instead of retrying.
//!
//! ## What is not simulated
//!
//! - A power cut keeps exactly the synced state. A real disk may also keep
//!   *some* unsynced writes, in any order, and tear a sector in half; tests
//!   that need such states build them by hand (truncating or flipping bits
//!   in a copy of a file).
//! - Renames, directories created through `std::fs`, and files changed
//!   outside the controller's handles are not tracked. A file opened without
//!   `create` that the controller has not seen is taken as durable as it is.
//! - A handle to a removed file must not be written to; its writes are not
//!   tracked against the file that comes back.
//! - Every operation runs under the controller's one lock, so faulty files
//!   are never used for measurements, only for correctness tests.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use crate::{Error, File, FileOpener, Result};

/// The name of the subdirectory where removed files wait for the directory
/// sync that makes their removal durable.
pub const REMOVED_DIR: &str = ".faulty-removed";

/// The operations a fault can be attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// [`File::read_at`].
    Read,
    /// [`File::write_at`] and [`File::append`].
    Write,
    /// [`File::set_len`].
    SetLen,
    /// [`File::sync_data`].
    Sync,
    /// [`FileOpener::sync_dir`].
    SyncDir,
}

/// What kind of fault an injected error stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultKind {
    /// An I/O error (`EIO`) on the given operation; nothing was done.
    Io(Op),
    /// A write of which only a prefix reached the file.
    TornWrite,
    /// The disk is full; the prefix that fitted was written.
    DiskFull,
    /// The handle belongs to a process that died at a simulated power cut.
    PowerCut,
}

/// The payload of every `std::io::Error` this module injects, so that a
/// test can tell an injected fault from a real one (see [`injected_fault`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedFault {
    /// What was injected.
    pub kind: FaultKind,
    /// The file (or directory) it was injected on.
    pub path: PathBuf,
}

impl fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            FaultKind::Io(op) => write!(f, "injected I/O error on {op:?}"),
            FaultKind::TornWrite => write!(f, "injected torn write"),
            FaultKind::DiskFull => write!(f, "injected disk full (ENOSPC)"),
            FaultKind::PowerCut => write!(f, "handle used after a simulated power cut"),
        }
    }
}

impl std::error::Error for InjectedFault {}

/// The injected fault behind `err`, if it is one.
pub fn injected_fault(err: &Error) -> Option<&InjectedFault> {
    match err {
        Error::Io { source, .. } => source.get_ref()?.downcast_ref::<InjectedFault>(),
        _ => None,
    }
}

/// How many operations a controller has seen and how many faults it injected.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FaultCounters {
    /// `read_at` calls seen.
    pub reads: u64,
    /// `write_at` and `append` calls seen.
    pub writes: u64,
    /// `set_len` calls seen.
    pub set_lens: u64,
    /// `sync_data` calls seen.
    pub syncs: u64,
    /// `sync_dir` calls seen.
    pub dir_syncs: u64,
    /// Injected I/O errors, on any operation.
    pub io_errors: u64,
    /// Injected torn writes.
    pub torn_writes: u64,
    /// Writes cut short by the space budget.
    pub disk_full: u64,
    /// Syncs that reported success without making anything durable.
    pub lying_syncs: u64,
    /// Simulated power cuts.
    pub power_cuts: u64,
}

impl FaultCounters {
    fn seen(&mut self, op: Op) -> u64 {
        let counter = match op {
            Op::Read => &mut self.reads,
            Op::Write => &mut self.writes,
            Op::SetLen => &mut self.set_lens,
            Op::Sync => &mut self.syncs,
            Op::SyncDir => &mut self.dir_syncs,
        };
        *counter += 1;
        *counter
    }

    fn count(&self, op: Op) -> u64 {
        match op {
            Op::Read => self.reads,
            Op::Write => self.writes,
            Op::SetLen => self.set_lens,
            Op::Sync => self.syncs,
            Op::SyncDir => self.dir_syncs,
        }
    }
}

/// A small deterministic generator (SplitMix64): the same seed gives the
/// same faults on every run and every platform, whatever version of `rand`.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A float in `0.0..1.0`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An integer in `0..bound` (`bound > 0`).
    fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Trigger {
    /// Fires once, on the operation with this sequence number.
    Nth(u64),
    /// Fires on each operation with this probability.
    Probability(f64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Fail,
    Tear,
}

#[derive(Debug, Clone, Copy)]
struct Rule {
    op: Op,
    trigger: Trigger,
    effect: Effect,
}

/// What survives a power cut of one file.
#[derive(Debug, Clone, Default)]
struct Durability {
    /// The file length at its last successful sync.
    synced_len: u64,
    /// Old bytes inside `0..synced_len` that unsynced writes overwrote or
    /// truncations cut off, oldest first. Applied newest first, they rebuild
    /// the synced contents.
    undo: Vec<(u64, Vec<u8>)>,
    /// A sync failed while lying syncs were enabled: later syncs lie.
    syncs_lie: bool,
}

#[derive(Debug)]
struct PendingRemove {
    /// Where the file lived.
    path: PathBuf,
    /// Where it waits for the directory sync.
    aside: PathBuf,
    durability: Option<Durability>,
}

#[derive(Debug)]
struct State {
    rng: SplitMix64,
    rules: Vec<Rule>,
    counters: FaultCounters,
    space_left: Option<u64>,
    lying_sync_after_failure: bool,
    dead: bool,
    /// Every file the controller has handed out, by canonical path.
    files: BTreeMap<PathBuf, Durability>,
    /// Files created since their directory was last synced.
    pending_creates: BTreeSet<PathBuf>,
    /// Files removed since their directory was last synced, oldest first.
    pending_removes: Vec<PendingRemove>,
    removed_seq: u64,
}

impl State {
    /// Counts an operation and decides whether a fault hits it.
    fn decide(&mut self, op: Op) -> Option<Effect> {
        let n = self.counters.seen(op);
        let mut effect = None;
        let mut fired_nth = None;
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.op != op {
                continue;
            }
            let fires = match rule.trigger {
                Trigger::Nth(at) => {
                    if at == n {
                        fired_nth = Some(i);
                    }
                    at == n
                }
                // Drawn even when an earlier rule fired, so that one rule
                // does not shift the random sequence of another.
                Trigger::Probability(p) => self.rng.next_f64() < p,
            };
            if fires && effect.is_none() {
                effect = Some(rule.effect);
            }
        }
        if let Some(i) = fired_nth {
            self.rules.remove(i);
        }
        effect
    }

    fn durability(&mut self, key: &Path) -> &mut Durability {
        self.files.entry(key.to_path_buf()).or_default()
    }
}

/// The shared brain of a set of faulty files: their fault plan, their
/// durability history and the power switch. Cloning it gives another handle
/// to the same controller.
#[derive(Debug, Clone)]
pub struct FaultController {
    state: Arc<Mutex<State>>,
}

impl FaultController {
    /// A controller with no faults planned, whose random choices all follow
    /// from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                rng: SplitMix64(seed),
                rules: Vec::new(),
                counters: FaultCounters::default(),
                space_left: None,
                lying_sync_after_failure: false,
                dead: false,
                files: BTreeMap::new(),
                pending_creates: BTreeSet::new(),
                pending_removes: Vec::new(),
                removed_seq: 0,
            })),
        }
    }

    /// Makes the `n`th operation of kind `op` from now (1 = the next one)
    /// fail with an I/O error, once.
    pub fn fail_nth(&self, op: Op, n: u64) {
        let mut state = self.state.lock();
        let at = state.counters.count(op) + n.max(1);
        state.rules.push(Rule {
            op,
            trigger: Trigger::Nth(at),
            effect: Effect::Fail,
        });
    }

    /// Makes every operation of kind `op` fail with probability `p`.
    pub fn fail_with_probability(&self, op: Op, p: f64) {
        self.state.lock().rules.push(Rule {
            op,
            trigger: Trigger::Probability(p),
            effect: Effect::Fail,
        });
    }

    /// Tears the `n`th write from now (1 = the next one): a strict prefix of
    /// it reaches the file, then it fails.
    pub fn tear_nth_write(&self, n: u64) {
        let mut state = self.state.lock();
        let at = state.counters.count(Op::Write) + n.max(1);
        state.rules.push(Rule {
            op: Op::Write,
            trigger: Trigger::Nth(at),
            effect: Effect::Tear,
        });
    }

    /// Tears every write with probability `p`.
    pub fn tear_writes_with_probability(&self, p: f64) {
        self.state.lock().rules.push(Rule {
            op: Op::Write,
            trigger: Trigger::Probability(p),
            effect: Effect::Tear,
        });
    }

    /// Forgets every planned I/O error and torn write (the space budget and
    /// the lying-sync switch stay).
    pub fn clear_faults(&self) {
        self.state.lock().rules.clear();
    }

    /// Sets how many more bytes files may grow by (`None`: unlimited).
    pub fn set_space_left(&self, bytes: Option<u64>) {
        self.state.lock().space_left = bytes;
    }

    /// How many more bytes files may grow by (`None`: unlimited).
    pub fn space_left(&self) -> Option<u64> {
        self.state.lock().space_left
    }

    /// After a failed sync of a file, make its later syncs report success
    /// without making anything durable (see the module docs).
    pub fn set_lying_sync_after_failure(&self, on: bool) {
        self.state.lock().lying_sync_after_failure = on;
    }

    /// The operations seen and faults injected so far.
    pub fn counters(&self) -> FaultCounters {
        self.state.lock().counters
    }

    /// Whether [`FaultController::power_cut`] has run.
    pub fn is_dead(&self) -> bool {
        self.state.lock().dead
    }

    /// The length `path` would have after a power cut now, if the controller
    /// tracks it.
    pub fn synced_len(&self, path: &Path) -> Option<u64> {
        let key = canonical(path);
        let state = self.state.lock();
        if state.pending_creates.contains(&key) {
            return None;
        }
        state.files.get(&key).map(|d| d.synced_len)
    }

    /// Cuts the power: every file goes back to its last-synced state,
    /// creations and removals not made durable by a directory sync are
    /// undone, and every handle and opener of this controller fails from now
    /// on. Calling it again does nothing.
    pub fn power_cut(&self) -> Result<()> {
        let mut state = self.state.lock();
        if state.dead {
            return Ok(());
        }
        state.dead = true;
        state.counters.power_cuts += 1;
        for key in std::mem::take(&mut state.pending_creates) {
            state.files.remove(&key);
            match std::fs::remove_file(&key) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&key, e)),
            }
        }
        for (key, durability) in std::mem::take(&mut state.files) {
            revert(&key, &durability)?;
        }
        for removed in std::mem::take(&mut state.pending_removes).into_iter().rev() {
            std::fs::rename(&removed.aside, &removed.path)
                .map_err(|e| Error::io(&removed.aside, e))?;
            if let Some(durability) = &removed.durability {
                revert(&removed.path, durability)?;
            }
            remove_empty_removed_dir(&removed.aside);
        }
        Ok(())
    }

    /// Locks the state, or fails if the power was cut.
    fn alive(&self, path: &Path) -> Result<MutexGuard<'_, State>> {
        let state = self.state.lock();
        if state.dead {
            return Err(fault(path, FaultKind::PowerCut));
        }
        Ok(state)
    }
}

/// Brings the file at `path` back to its durable state.
fn revert(path: &Path, durability: &Durability) -> Result<()> {
    let file = match OpenOptions::new().write(true).open(path) {
        Ok(file) => file,
        // Removed behind the controller's back: nothing to bring back.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    };
    file.set_len(durability.synced_len)
        .map_err(|e| Error::io(path, e))?;
    for (offset, old) in durability.undo.iter().rev() {
        file.write_all_at(old, *offset)
            .map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

fn remove_empty_removed_dir(aside: &Path) {
    if let Some(dir) = aside.parent() {
        // Fails (and is meant to) while other removed files wait in it.
        let _ = std::fs::remove_dir(dir);
    }
}

/// The key a file is tracked under: its directory canonicalized, so that
/// `sync_dir` finds the files of a directory however it is spelled.
fn canonical(path: &Path) -> PathBuf {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match (std::fs::canonicalize(parent), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

fn fault(path: &Path, kind: FaultKind) -> Error {
    let io_kind = match kind {
        FaultKind::DiskFull => io::ErrorKind::StorageFull,
        FaultKind::Io(_) | FaultKind::TornWrite | FaultKind::PowerCut => io::ErrorKind::Other,
    };
    Error::io(
        path,
        io::Error::new(
            io_kind,
            InjectedFault {
                kind,
                path: path.to_path_buf(),
            },
        ),
    )
}

/// A [`File`] that reports every operation to a [`FaultController`], which
/// may make it fail, and which remembers what a power cut would undo.
#[derive(Debug)]
pub struct FaultyFile<F: File> {
    inner: F,
    /// The canonical path the controller tracks the file under.
    key: PathBuf,
    controller: FaultController,
}

impl<F: File> FaultyFile<F> {
    /// Wraps an open file. Its current contents are taken as durable.
    pub fn wrap(inner: F, controller: &FaultController) -> Result<Self> {
        let key = canonical(inner.path());
        let len = inner.len()?;
        let mut state = controller.alive(inner.path())?;
        state.files.entry(key.clone()).or_insert(Durability {
            synced_len: len,
            ..Durability::default()
        });
        drop(state);
        Ok(Self {
            inner,
            key,
            controller: controller.clone(),
        })
    }

    /// The wrapped file.
    pub fn inner(&self) -> &F {
        &self.inner
    }

    /// The controller this file reports to.
    pub fn controller(&self) -> &FaultController {
        &self.controller
    }

    fn fault(&self, kind: FaultKind) -> Error {
        fault(self.inner.path(), kind)
    }

    /// Saves the bytes of `offset..offset + len` that lie inside the synced
    /// part of the file, before they are overwritten or cut off.
    fn save_undo(&self, state: &mut State, offset: u64, len: u64, file_len: u64) -> Result<()> {
        let durability = state.durability(&self.key);
        let end = offset
            .saturating_add(len)
            .min(durability.synced_len)
            .min(file_len);
        if end <= offset {
            return Ok(());
        }
        let Ok(undo_len) = usize::try_from(end - offset) else {
            return Err(Error::Overflow {
                path: self.inner.path().to_path_buf(),
                offset,
            });
        };
        let mut old = vec![0u8; undo_len];
        self.inner.read_at(offset, &mut old)?;
        durability.undo.push((offset, old));
        Ok(())
    }

    /// `write_at` (`at = Some`) or `append` (`at = None`), with faults.
    fn write(&self, at: Option<u64>, data: &[u8]) -> Result<u64> {
        let mut state = self.controller.alive(self.inner.path())?;
        let effect = state.decide(Op::Write);
        if effect == Some(Effect::Fail) {
            state.counters.io_errors += 1;
            return Err(self.fault(FaultKind::Io(Op::Write)));
        }
        let file_len = self.inner.len()?;
        let offset = at.unwrap_or(file_len);
        let mut keep = data.len();
        let mut injected = None;
        if effect == Some(Effect::Tear) && !data.is_empty() {
            keep = state.rng.below(data.len() as u64) as usize;
            injected = Some(FaultKind::TornWrite);
        }
        if let Some(space) = state.space_left {
            let end = offset.saturating_add(keep as u64);
            if end.saturating_sub(file_len) > space {
                let fits = file_len.saturating_add(space).saturating_sub(offset);
                keep = keep.min(usize::try_from(fits).unwrap_or(usize::MAX));
                injected = Some(FaultKind::DiskFull);
            }
        }
        let prefix = data.get(..keep).unwrap_or(data);
        self.save_undo(&mut state, offset, prefix.len() as u64, file_len)?;
        let result = if prefix.is_empty() {
            Ok(offset)
        } else if at.is_some() {
            self.inner.write_at(offset, prefix).map(|()| offset)
        } else {
            self.inner.append(prefix)
        };
        let grown = self.inner.len()?.saturating_sub(file_len);
        if let Some(space) = &mut state.space_left {
            *space = space.saturating_sub(grown);
        }
        let offset = result?;
        match injected {
            Some(kind) => {
                match kind {
                    FaultKind::DiskFull => state.counters.disk_full += 1,
                    _ => state.counters.torn_writes += 1,
                }
                Err(self.fault(kind))
            }
            None => Ok(offset),
        }
    }
}

impl<F: File> File for FaultyFile<F> {
    fn path(&self) -> &Path {
        self.inner.path()
    }

    fn len(&self) -> Result<u64> {
        let _state = self.controller.alive(self.inner.path())?;
        self.inner.len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let mut state = self.controller.alive(self.inner.path())?;
        if state.decide(Op::Read).is_some() {
            state.counters.io_errors += 1;
            return Err(self.fault(FaultKind::Io(Op::Read)));
        }
        self.inner.read_at(offset, buf)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.write(Some(offset), data).map(|_| ())
    }

    fn append(&self, data: &[u8]) -> Result<u64> {
        self.write(None, data)
    }

    fn set_len(&self, new_len: u64) -> Result<()> {
        let mut state = self.controller.alive(self.inner.path())?;
        if state.decide(Op::SetLen).is_some() {
            state.counters.io_errors += 1;
            return Err(self.fault(FaultKind::Io(Op::SetLen)));
        }
        let file_len = self.inner.len()?;
        if new_len < file_len {
            self.save_undo(&mut state, new_len, file_len - new_len, file_len)?;
        }
        self.inner.set_len(new_len)?;
        if let Some(space) = &mut state.space_left {
            // Growing with set_len never fails for lack of space (the new
            // bytes are a hole), but it does use up the budget.
            *space = if new_len >= file_len {
                space.saturating_sub(new_len - file_len)
            } else {
                space.saturating_add(file_len - new_len)
            };
        }
        Ok(())
    }

    fn sync_data(&self) -> Result<()> {
        let mut state = self.controller.alive(self.inner.path())?;
        if state.decide(Op::Sync).is_some() {
            state.counters.io_errors += 1;
            if state.lying_sync_after_failure {
                state.durability(&self.key).syncs_lie = true;
            }
            return Err(self.fault(FaultKind::Io(Op::Sync)));
        }
        self.inner.sync_data()?;
        let len = self.inner.len()?;
        let durability = state.durability(&self.key);
        if durability.syncs_lie {
            state.counters.lying_syncs += 1;
            return Ok(());
        }
        durability.synced_len = len;
        durability.undo.clear();
        Ok(())
    }
}

/// A [`FileOpener`] whose files are [`FaultyFile`]s sharing one
/// [`FaultController`], and which tracks creations and removals until their
/// directory is synced.
#[derive(Debug, Clone)]
pub struct FaultyOpener<O: FileOpener> {
    inner: O,
    controller: FaultController,
}

impl<O: FileOpener> FaultyOpener<O> {
    /// An opener over `inner` with a new controller seeded with `seed`.
    pub fn new(inner: O, seed: u64) -> Self {
        Self::with_controller(inner, FaultController::new(seed))
    }

    /// An opener over `inner` that reports to `controller`.
    pub fn with_controller(inner: O, controller: FaultController) -> Self {
        Self { inner, controller }
    }

    /// The controller shared by every file of this opener.
    pub fn controller(&self) -> &FaultController {
        &self.controller
    }
}

impl<O: FileOpener> FileOpener for FaultyOpener<O> {
    type File = FaultyFile<O::File>;

    fn open(&self, path: &Path, create: bool) -> Result<Self::File> {
        let mut state = self.controller.alive(path)?;
        let existed = path.try_exists().map_err(|e| Error::io(path, e))?;
        let inner = self.inner.open(path, create)?;
        let key = canonical(path);
        if existed {
            let len = inner.len()?;
            state.files.entry(key.clone()).or_insert(Durability {
                synced_len: len,
                ..Durability::default()
            });
        } else {
            state.files.insert(key.clone(), Durability::default());
            state.pending_creates.insert(key.clone());
        }
        drop(state);
        Ok(FaultyFile {
            inner,
            key,
            controller: self.controller.clone(),
        })
    }

    fn remove(&self, path: &Path) -> Result<()> {
        let mut state = self.controller.alive(path)?;
        let key = canonical(path);
        if state.pending_creates.remove(&key) {
            // Its creation was never durable: after a power cut it would be
            // gone anyway, so it can go for real now.
            state.files.remove(&key);
            return self.inner.remove(path);
        }
        let (Some(dir), Some(name)) = (key.parent(), key.file_name()) else {
            return self.inner.remove(path);
        };
        let removed_dir = dir.join(REMOVED_DIR);
        std::fs::create_dir_all(&removed_dir).map_err(|e| Error::io(&removed_dir, e))?;
        state.removed_seq += 1;
        let mut aside_name = std::ffi::OsString::from(format!("{}-", state.removed_seq));
        aside_name.push(name);
        let aside = removed_dir.join(aside_name);
        std::fs::rename(path, &aside).map_err(|e| Error::io(path, e))?;
        let durability = state.files.remove(&key);
        state.pending_removes.push(PendingRemove {
            path: key,
            aside,
            durability,
        });
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        let mut state = self.controller.alive(dir)?;
        if state.decide(Op::SyncDir).is_some() {
            state.counters.io_errors += 1;
            return Err(fault(dir, FaultKind::Io(Op::SyncDir)));
        }
        self.inner.sync_dir(dir)?;
        let dir = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
        state
            .pending_creates
            .retain(|path| path.parent() != Some(dir.as_path()));
        let (durable, pending): (Vec<_>, Vec<_>) = std::mem::take(&mut state.pending_removes)
            .into_iter()
            .partition(|removed| removed.path.parent() == Some(dir.as_path()));
        state.pending_removes = pending;
        for removed in durable {
            std::fs::remove_file(&removed.aside).map_err(|e| Error::io(&removed.aside, e))?;
            remove_empty_removed_dir(&removed.aside);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MonolithicFile, MonolithicOpener};

    fn opener(seed: u64) -> FaultyOpener<MonolithicOpener> {
        FaultyOpener::new(MonolithicOpener, seed)
    }

    fn contents(path: &Path) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }

    /// A file created and made durable (data and directory entry).
    fn durable_file(
        opener: &FaultyOpener<MonolithicOpener>,
        dir: &Path,
        name: &str,
        data: &[u8],
    ) -> FaultyFile<MonolithicFile> {
        let file = opener.open(&dir.join(name), true).unwrap();
        file.append(data).unwrap();
        file.sync_data().unwrap();
        opener.sync_dir(dir).unwrap();
        file
    }

    fn kind_of(err: &Error) -> FaultKind {
        injected_fault(err)
            .unwrap_or_else(|| panic!("not an injected fault: {err}"))
            .kind
    }

    #[test]
    fn power_cut_drops_exactly_the_unsynced_appends() {
        let dir = tempfile::tempdir().unwrap();
        let opener = opener(1);
        let file = durable_file(&opener, dir.path(), "log", b"synced-");
        file.append(b"lost").unwrap();
        file.append(b"-also lost").unwrap();
        assert_eq!(file.len().unwrap(), 21);
        opener.controller().power_cut().unwrap();
        assert_eq!(contents(&dir.path().join("log")), b"synced-");
    }

    #[test]
    fn power_cut_keeps_synced_writes() {
        let dir = tempfile::tempdir().unwrap();
        let opener = opener(1);
        let file = durable_file(&opener, dir.path(), "log", b"first ");
        file.append(b"second").unwrap();
        file.sync_data().unwrap();
        file.append(b" third").unwrap();
        assert_eq!(opener.controller().synced_len(file.path()), Some(12));
        opener.controller().power_cut().unwrap();
        assert_eq!(contents(&dir.path().join("log")), b"first second");
    }

    #[test]
    fn power_cut_undoes_unsynced_overwrites_and_truncations() {
        let dir = tempfile::tempdir().unwrap();
        let opener = opener(1);
        let file = durable_file(&opener, dir.path(), "pages", b"AAAABBBBCCCC");
        file.write_at(4, b"xxxx").unwrap();
        // Overwrite the same bytes twice: the oldest value must come back.
        file.write_at(2, b"yyyyyy").unwrap();
        file.set_len(6).unwrap();
        file.append(b"zzzzzzzzzzzz").unwrap();
        file.write_at(20, b"beyond").unwrap();
        assert_eq!(contents(file.path()), b"AAyyyyzzzzzzzzzzzz\0\0beyond");
        opener.controller().power_cut().unwrap();
        assert_eq!(contents(&dir.path().join("pages")), b"AAAABBBBCCCC");
    }

    #[test]
    fn every_handle_fails_after_a_power_cut_and_a_fresh_opener_reads_the_durable_state() {
        let dir = tempfile::tempdir().unwrap();
        let opener = opener(1);
        let path = dir.path().join("log");
        let file = durable_file(&opener, dir.path(), "log", b"kept");
        file.append(b"gone").unwrap();
        opener.controller().power_cut().unwrap();
        assert!(opener.controller().is_dead());
        for err in [
            file.read_at(0, &mut [0u8; 1]).unwrap_err(),
            file.append(b"x").unwrap_err(),
            file.sync_data().unwrap_err(),
            file.len().unwrap_err(),
            opener.open(&path, false).unwrap_err(),
            opener.sync_dir(dir.path()).unwrap_err(),
        ] {
            assert_eq!(kind_of(&err), FaultKind::PowerCut);
        }
        let fresh = self::opener(2);
        let file = fresh.open(&path, false).unwrap();
        assert_eq!(file.len().unwrap(), 4);
        let mut buf = [0u8; 4];
        file.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"kept");
    }

    #[test]
    fn a_file_whose_directory_was_not_synced_vanishes() {
        let dir = tempfile::tempdir().unwrap();
        let opener = opener(1);
        let kept = opener.open(&dir.path().join("kept"), true).unwrap();
        kept.append(b"data").unwrap();
        kept.sync_data().unwrap();
        opener.sync_dir(dir.path()).unwrap();
        // Synced data, but its directory entry was never made durable.
        let lost = opener.open(&dir.path().join("lost"), true).unwrap();
        lost.append(b"data").unwrap();
        lost.sync_data().unwrap();
        assert_eq!(opener.controller().synced_len(lost.path()), None);
        opener.controller().power_cut().unwrap();
        assert_eq!(contents(&dir.path().join("kept")), b"data");
        assert!(!dir.path().join("lost").exists());
    }

    #[test]
    fn a_removal_is_undone_by_a_power_cut_before_the_directory_sync() {
        let dir = tempfile::tempdir().unwrap();
        let opener = opener(1);
        let path = dir.path().join("segment");
        let file = durable_file(&opener, dir.path(), "segment", b"durable");
        file.append(b" and not").unwrap();
        drop(file);
        opener.remove(&path).unwrap();
        assert!(!path.exists());
        opener.controller().power_cut().unwrap();
        assert_eq!(contents(&path), b"durable");
        assert!(!dir.path().join(REMOVED_DIR).exists());
    }

    #[test]
    fn a_removal_made_durable_by_the_directory_sync_stays() {
        let dir = tempfile::tempdir().unwrap();
        let opener = opener(1);
        let path = dir.path().join("segment");
        drop(durable_file(&opener, dir.path(), "segment", b"durable"));
        opener.remove(&path).unwrap();
        opener.sync_dir(dir.path()).unwrap();
        assert!(!dir.path().join(REMOVED_DIR).exists());
        opener.controller().power_cut().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn disk_full_writes_the_prefix_that_fits_until_space_returns() {
        let dir = tempfile::tempdir().unwrap();
        let opener = opener(1);
        let file = opener.open(&dir.path().join("f"), true).unwrap();
        file.append(b"0123").unwrap();
        opener.controller().set_space_left(Some(6));
        let err = file.append(b"abcdefghij").unwrap_err();
        assert_eq!(kind_of(&err), FaultKind::DiskFull);
        assert_eq!(err.io_kind(), Some(io::ErrorKind::StorageFull));
        assert_eq!(contents(file.path()), b"0123abcdef");
        assert_eq!(opener.controller().space_left(), Some(0));
        // Overwriting in place needs no space.
        file.write_at(0, b"ZZ").unwrap();
        // Truncating gives space back.
        file.set_len(8).unwrap();
        assert_eq!(opener.controller().space_left(), Some(2));
        let err = file.write_at(8, b"xyz").unwrap_err();
        assert_eq!(kind_of(&err), FaultKind::DiskFull);
        assert_eq!(contents(file.path()), b"ZZ23abcdxy");
        opener.controller().set_space_left(None);
        file.append(b"!").unwrap();
        assert_eq!(contents(file.path()), b"ZZ23abcdxy!");
        assert_eq!(opener.controller().counters().disk_full, 2);
    }

    #[test]
    fn a_torn_write_leaves_a_strict_prefix_chosen_by_the_seed() {
        let torn_len = |seed| {
            let dir = tempfile::tempdir().unwrap();
            let opener = opener(seed);
            let file = opener.open(&dir.path().join("f"), true).unwrap();
            opener.controller().tear_nth_write(2);
            file.append(b"first").unwrap();
            let err = file.append(&[7u8; 1000]).unwrap_err();
            assert_eq!(kind_of(&err), FaultKind::TornWrite);
            let data = contents(file.path());
            assert_eq!(&data[..5], b"first");
            assert!(data[5..].iter().all(|&b| b == 7));
            assert!(data.len() < 1005, "a torn write must not complete");
            // The fault fires once.
            file.append(b"x").unwrap();
            assert_eq!(opener.controller().counters().torn_writes, 1);
            data.len()
        };
        assert_eq!(torn_len(42), torn_len(42));
        let lens: BTreeSet<usize> = (0..8).map(torn_len).collect();
        assert!(
            lens.len() > 1,
            "the prefix length should depend on the seed"
        );
    }

    #[test]
    fn the_nth_operation_fails_once_and_does_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let opener = opener(1);
        let file = opener.open(&dir.path().join("f"), true).unwrap();
        opener.controller().fail_nth(Op::Write, 3);
        opener.controller().fail_nth(Op::Read, 1);
        opener.controller().fail_nth(Op::SetLen, 1);
        file.append(b"a").unwrap();
        file.append(b"b").unwrap();
        let err = file.append(b"c").unwrap_err();
        assert_eq!(kind_of(&err), FaultKind::Io(Op::Write));
        file.append(b"d").unwrap();
        assert_eq!(contents(file.path()), b"abd");
        let err = file.read_at(0, &mut [0u8; 1]).unwrap_err();
        assert_eq!(kind_of(&err), FaultKind::Io(Op::Read));
        file.read_at(0, &mut [0u8; 1]).unwrap();
        let err = file.set_len(0).unwrap_err();
        assert_eq!(kind_of(&err), FaultKind::Io(Op::SetLen));
        assert_eq!(file.len().unwrap(), 3);
        let counters = opener.controller().counters();
        assert_eq!(counters.io_errors, 3);
        assert_eq!(counters.writes, 4);
        assert_eq!(counters.reads, 2);
    }

    #[test]
    fn a_failed_sync_makes_nothing_durable() {
        let dir = tempfile::tempdir().unwrap();
        let opener = opener(1);
        let file = durable_file(&opener, dir.path(), "log", b"old");
        file.append(b"new").unwrap();
        opener.controller().fail_nth(Op::Sync, 1);
        let err = file.sync_data().unwrap_err();
        assert_eq!(kind_of(&err), FaultKind::Io(Op::Sync));
        opener.controller().power_cut().unwrap();
        assert_eq!(contents(&dir.path().join("log")), b"old");
    }

    #[test]
    fn after_a_failed_sync_a_lying_sync_succeeds_but_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let opener = opener(1);
        opener.controller().set_lying_sync_after_failure(true);
        let file = durable_file(&opener, dir.path(), "log", b"old");
        file.append(b"new").unwrap();
        opener.controller().fail_nth(Op::Sync, 1);
        file.sync_data().unwrap_err();
        // The retry "works"...
        file.sync_data().unwrap();
        assert_eq!(opener.controller().counters().lying_syncs, 1);
        opener.controller().power_cut().unwrap();
        // ...but the data never reached the disk.
        assert_eq!(contents(&dir.path().join("log")), b"old");
    }

    #[test]
    fn probabilistic_faults_follow_the_seed() {
        let pattern = |seed| {
            let dir = tempfile::tempdir().unwrap();
            let opener = opener(seed);
            let file = opener.open(&dir.path().join("f"), true).unwrap();
            file.append(&[0u8; 64]).unwrap();
            opener.controller().fail_with_probability(Op::Read, 0.25);
            (0..400)
                .map(|_| file.read_at(0, &mut [0u8; 8]).is_err())
                .collect::<Vec<bool>>()
        };
        let a = pattern(7);
        assert_eq!(a, pattern(7));
        assert_ne!(a, pattern(8));
        let failures = a.iter().filter(|&&failed| failed).count();
        assert!(
            (50..150).contains(&failures),
            "{failures} of 400 at p = 0.25"
        );
    }

    #[test]
    fn a_wrapped_file_counts_as_durable_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"existing").unwrap();
        let controller = FaultController::new(3);
        let file =
            FaultyFile::wrap(MonolithicFile::open(&path, false).unwrap(), &controller).unwrap();
        file.write_at(0, b"EX").unwrap();
        file.append(b"+more").unwrap();
        controller.power_cut().unwrap();
        assert_eq!(contents(&path), b"existing");
    }
}
