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
//! - **Torn sectors that reach the disk**
//!   ([`FaultController::set_torn_writes_survive_power_cut`]): the prefix a
//!   torn write left also survives a later power cut, as when the platter
//!   keeps the sectors written before the power went. A layout that
//!   rewrites synced bytes in place loses them this way; one that never
//!   overwrites its last synced copy does not.
//! - **Power cut** ([`FaultController::power_cut`]): every file opened
//!   through the controller goes back to its last-synced state. Per file the
//!   controller keeps the synced length and an undo log of the old bytes
//!   that unsynced `write_at`/`set_len` calls overwrote or cut off inside the
//!   synced length, so appends, in-place page writes and truncations are all
//!   undone. Afterwards every handle and opener of that controller fails
//!   (the process died); a test reopens the directory with a fresh opener.
//! - **Directory durability**: every change to a directory entry made
//!   through the opener (a file created, a directory created with
//!   [`FileOpener::create_dir_all`], a rename, a removal) is logged, and a
//!   power cut undoes, newest first, every change whose directory has not
//!   been synced ([`FileOpener::sync_dir`]) since. So a new file or
//!   directory disappears (a directory with all it holds); a renamed file
//!   goes back to its old name, and the file the rename replaced comes back;
//!   a removed file comes back, with its last-synced contents. A removed or
//!   replaced file waits for that in a hidden `.faulty-removed/`
//!   subdirectory (deleted when empty, hidden from
//!   [`FileOpener::list_dir`]). A rename across two directories is undone
//!   unless both were synced after it.
//! - **Files, not names**: the controller tracks durability per file (an
//!   inode), not per name, so a handle stays tracked when its file is
//!   renamed or removed: writes through it are undone at a power cut that
//!   brings the file back.
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
//! - Directory changes made through `std::fs` instead of the opener, and
//!   files changed outside the controller's handles, are not tracked. A file
//!   opened without `create` that the controller has not seen is taken as
//!   durable as it is.
//! - Directory changes are undone all or nothing per directory sync; a real
//!   file system may also persist some unsynced ones (in any order).
//! - Every operation runs under the controller's one lock, so faulty files
//!   are never used for measurements, only for correctness tests.

use std::collections::BTreeMap;
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
    /// Files removed through the opener (a rename that replaces a file
    /// counts as a rename only).
    pub removes: u64,
    /// Files renamed through the opener.
    pub renames: u64,
    /// Directory changes (creations, renames, removals) that power cuts
    /// undid because no directory sync had made them durable.
    pub dir_changes_lost: u64,
    /// Of those, renames (a rename that replaced a file also counts one
    /// removal).
    pub renames_lost: u64,
    /// Of those, removals.
    pub removes_lost: u64,
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
    /// Prefixes of torn writes that survive a power cut (written after the
    /// undo log is applied), oldest first.
    torn_survivors: Vec<(u64, Vec<u8>)>,
}

/// A change to a directory entry that is not durable yet.
#[derive(Debug)]
enum DirChange {
    /// A file was created at `path`.
    CreateFile { path: PathBuf },
    /// A directory was created at `path`.
    CreateDir { path: PathBuf },
    /// The file at `path` was removed; it waits at `aside` for the
    /// directory sync that makes its removal durable.
    Remove {
        path: PathBuf,
        aside: PathBuf,
        node: Option<u64>,
    },
    /// The file at `from` was renamed to `to`. If `to` existed, its removal
    /// is the `Remove` logged just before.
    Rename { from: PathBuf, to: PathBuf },
}

impl DirChange {
    /// The directories whose entries the change touched.
    fn dirs(&self) -> Vec<PathBuf> {
        let parent = |p: &Path| p.parent().map(Path::to_path_buf).unwrap_or_default();
        match self {
            DirChange::CreateFile { path }
            | DirChange::CreateDir { path }
            | DirChange::Remove { path, .. } => vec![parent(path)],
            DirChange::Rename { from, to } => {
                let mut dirs = vec![parent(from), parent(to)];
                dirs.dedup();
                dirs
            }
        }
    }

    /// Whether the change touched the entry `key`.
    fn touches(&self, key: &Path) -> bool {
        match self {
            DirChange::CreateFile { path } | DirChange::Remove { path, .. } => path == key,
            DirChange::CreateDir { path } => key.starts_with(path),
            DirChange::Rename { from, to } => from == key || to == key,
        }
    }
}

/// A [`DirChange`] and the directories still to be synced before it is
/// durable (two for a rename across directories).
#[derive(Debug)]
struct PendingChange {
    change: DirChange,
    unsynced: Vec<PathBuf>,
}

#[derive(Debug)]
struct State {
    rng: SplitMix64,
    rules: Vec<Rule>,
    counters: FaultCounters,
    space_left: Option<u64>,
    lying_sync_after_failure: bool,
    torn_writes_survive: bool,
    dead: bool,
    /// What survives a power cut of every file the controller has handed
    /// out, by node. A node is the file itself (an inode), not its name:
    /// its history follows it through renames and removals, and every
    /// handle reports to its node.
    nodes: BTreeMap<u64, Durability>,
    /// The node behind each live name the controller tracks, by canonical
    /// path.
    entries: BTreeMap<PathBuf, u64>,
    last_node: u64,
    /// Directory changes since their directories were last synced, oldest
    /// first. A power cut undoes them newest first.
    pending: Vec<PendingChange>,
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

    fn durability(&mut self, node: u64) -> &mut Durability {
        self.nodes.entry(node).or_default()
    }

    fn new_node(&mut self, durability: Durability) -> u64 {
        self.last_node += 1;
        self.nodes.insert(self.last_node, durability);
        self.last_node
    }

    /// The node of the existing file `key`; a file the controller has not
    /// seen is taken as durable as it is, `len` bytes.
    fn track_existing(&mut self, key: &Path, len: u64) -> u64 {
        if let Some(&node) = self.entries.get(key) {
            return node;
        }
        let node = self.new_node(Durability {
            synced_len: len,
            ..Durability::default()
        });
        self.entries.insert(key.to_path_buf(), node);
        node
    }

    fn log(&mut self, change: DirChange) {
        let unsynced = change.dirs();
        self.pending.push(PendingChange { change, unsynced });
    }

    /// Whether the name `key` exists only through changes a power cut
    /// would undo.
    fn is_pending_name(&self, key: &Path) -> bool {
        self.pending.iter().any(|p| match &p.change {
            DirChange::CreateFile { path } => path == key,
            DirChange::CreateDir { path } => key.starts_with(path),
            DirChange::Rename { to, .. } => to == key,
            DirChange::Remove { .. } => false,
        })
    }

    /// Removes the file at `path` (canonical `key`): for real if its
    /// creation is the last change to the name and was never made durable
    /// (a power cut would remove it anyway), otherwise by moving it aside
    /// into [`REMOVED_DIR`], where it waits for the directory sync.
    fn remove_entry<O: FileOpener>(&mut self, inner: &O, path: &Path, key: &Path) -> Result<()> {
        let last = self.pending.iter().rposition(|p| p.change.touches(key));
        if let Some(i) = last
            && matches!(&self.pending[i].change, DirChange::CreateFile { path } if path == key)
        {
            self.pending.remove(i);
            if let Some(node) = self.entries.remove(key) {
                self.nodes.remove(&node);
            }
            return inner.remove(path);
        }
        let (Some(dir), Some(name)) = (key.parent(), key.file_name()) else {
            return inner.remove(path);
        };
        let removed_dir = dir.join(REMOVED_DIR);
        std::fs::create_dir_all(&removed_dir).map_err(|e| Error::io(&removed_dir, e))?;
        self.removed_seq += 1;
        let mut aside_name = std::ffi::OsString::from(format!("{}-", self.removed_seq));
        aside_name.push(name);
        let aside = removed_dir.join(aside_name);
        std::fs::rename(path, &aside).map_err(|e| Error::io(path, e))?;
        let node = self.entries.remove(key);
        self.log(DirChange::Remove {
            path: key.to_path_buf(),
            aside,
            node,
        });
        Ok(())
    }

    /// Undoes one directory change, at a power cut.
    fn undo(&mut self, change: DirChange) -> Result<()> {
        self.counters.dir_changes_lost += 1;
        match change {
            DirChange::CreateFile { path } => {
                self.entries.remove(&path);
                ignore_not_found(std::fs::remove_file(&path), &path)?;
            }
            DirChange::CreateDir { path } => {
                self.entries.retain(|name, _| !name.starts_with(&path));
                ignore_not_found(std::fs::remove_dir_all(&path), &path)?;
            }
            DirChange::Remove { path, aside, node } => {
                self.counters.removes_lost += 1;
                std::fs::rename(&aside, &path).map_err(|e| Error::io(&aside, e))?;
                if let Some(node) = node {
                    self.entries.insert(path, node);
                }
                remove_empty_removed_dir(&aside);
            }
            DirChange::Rename { from, to } => {
                self.counters.renames_lost += 1;
                // The target may be gone if its removal was made durable
                // (only possible across two directories).
                if ignore_not_found(std::fs::rename(&to, &from), &to)?
                    && let Some(node) = self.entries.remove(&to)
                {
                    self.entries.insert(from, node);
                }
            }
        }
        Ok(())
    }
}

/// `Ok(true)` if `result` is `Ok`, `Ok(false)` if it failed with `NotFound`.
fn ignore_not_found(result: io::Result<()>, path: &Path) -> Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, e)),
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
                torn_writes_survive: false,
                dead: false,
                nodes: BTreeMap::new(),
                entries: BTreeMap::new(),
                last_node: 0,
                pending: Vec::new(),
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

    /// Makes the bytes a torn write left survive a later power cut (see the
    /// module docs). Off by default.
    pub fn set_torn_writes_survive_power_cut(&self, on: bool) {
        self.state.lock().torn_writes_survive = on;
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
        if state.is_pending_name(&key) {
            return None;
        }
        let node = state.entries.get(&key)?;
        state.nodes.get(node).map(|d| d.synced_len)
    }

    /// Cuts the power: creations, renames and removals not made durable by
    /// a directory sync are undone (newest first), every file goes back to
    /// its last-synced state, and every handle and opener of this
    /// controller fails from now on. Calling it again does nothing.
    pub fn power_cut(&self) -> Result<()> {
        let mut state = self.state.lock();
        if state.dead {
            return Ok(());
        }
        state.dead = true;
        state.counters.power_cuts += 1;
        let pending = std::mem::take(&mut state.pending);
        for change in pending.into_iter().rev() {
            state.undo(change.change)?;
        }
        let nodes = std::mem::take(&mut state.nodes);
        for (path, node) in std::mem::take(&mut state.entries) {
            if let Some(durability) = nodes.get(&node) {
                revert(&path, durability)?;
            }
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
    for (offset, torn) in &durability.torn_survivors {
        file.write_all_at(torn, *offset)
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
    /// The node the controller tracks the file under (see `State::nodes`).
    node: u64,
    controller: FaultController,
}

impl<F: File> FaultyFile<F> {
    /// Wraps an open file. Its current contents are taken as durable.
    pub fn wrap(inner: F, controller: &FaultController) -> Result<Self> {
        let key = canonical(inner.path());
        let len = inner.len()?;
        let mut state = controller.alive(inner.path())?;
        let node = state.track_existing(&key, len);
        drop(state);
        Ok(Self {
            inner,
            node,
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
        let durability = state.durability(self.node);
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
                if kind == FaultKind::TornWrite && state.torn_writes_survive && !prefix.is_empty() {
                    state
                        .durability(self.node)
                        .torn_survivors
                        .push((offset, prefix.to_vec()));
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
                state.durability(self.node).syncs_lie = true;
            }
            return Err(self.fault(FaultKind::Io(Op::Sync)));
        }
        self.inner.sync_data()?;
        let len = self.inner.len()?;
        let durability = state.durability(self.node);
        if durability.syncs_lie {
            state.counters.lying_syncs += 1;
            return Ok(());
        }
        durability.synced_len = len;
        durability.undo.clear();
        durability.torn_survivors.clear();
        Ok(())
    }
}

/// A [`FileOpener`] whose files are [`FaultyFile`]s sharing one
/// [`FaultController`], and which tracks creations, renames and removals
/// until their directory is synced.
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

    fn writes_in_place(&self) -> bool {
        self.inner.writes_in_place()
    }

    fn open(&self, path: &Path, create: bool) -> Result<Self::File> {
        let mut state = self.controller.alive(path)?;
        let existed = path.try_exists().map_err(|e| Error::io(path, e))?;
        let inner = self.inner.open(path, create)?;
        let key = canonical(path);
        let node = if existed {
            state.track_existing(&key, inner.len()?)
        } else {
            let node = state.new_node(Durability::default());
            state.entries.insert(key.clone(), node);
            state.log(DirChange::CreateFile { path: key });
            node
        };
        drop(state);
        Ok(FaultyFile {
            inner,
            node,
            controller: self.controller.clone(),
        })
    }

    fn remove(&self, path: &Path) -> Result<()> {
        let mut state = self.controller.alive(path)?;
        state.counters.removes += 1;
        state.remove_entry(&self.inner, path, &canonical(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let mut state = self.controller.alive(from)?;
        let (from_key, to_key) = (canonical(from), canonical(to));
        if from_key == to_key {
            return Ok(());
        }
        state.counters.renames += 1;
        if to.try_exists().map_err(|e| Error::io(to, e))? {
            // The replaced file waits aside, like a removed one: a power
            // cut before the directory sync brings it back.
            state.remove_entry(&self.inner, to, &to_key)?;
        }
        self.inner.rename(from, to)?;
        if let Some(node) = state.entries.remove(&from_key) {
            state.entries.insert(to_key.clone(), node);
        }
        state.log(DirChange::Rename {
            from: from_key,
            to: to_key,
        });
        Ok(())
    }

    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        let mut state = self.controller.alive(dir)?;
        let missing: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|a| !a.as_os_str().is_empty() && matches!(a.try_exists(), Ok(false)))
            .map(Path::to_path_buf)
            .collect();
        self.inner.create_dir_all(dir)?;
        for created in missing.into_iter().rev() {
            let path = std::fs::canonicalize(&created).map_err(|e| Error::io(&created, e))?;
            state.log(DirChange::CreateDir { path });
        }
        Ok(())
    }

    fn dir_lock(&self) -> Option<&crate::DirLock> {
        self.inner.dir_lock()
    }

    fn list_dir(&self, dir: &Path) -> Result<Vec<std::ffi::OsString>> {
        let _state = self.controller.alive(dir)?;
        let mut names = self.inner.list_dir(dir)?;
        names.retain(|name| name != REMOVED_DIR);
        Ok(names)
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        let mut state = self.controller.alive(dir)?;
        if state.decide(Op::SyncDir).is_some() {
            state.counters.io_errors += 1;
            return Err(fault(dir, FaultKind::Io(Op::SyncDir)));
        }
        self.inner.sync_dir(dir)?;
        let dir = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
        for pending in &mut state.pending {
            pending.unsynced.retain(|d| *d != dir);
        }
        let (durable, pending): (Vec<_>, Vec<_>) = std::mem::take(&mut state.pending)
            .into_iter()
            .partition(|p| p.unsynced.is_empty());
        state.pending = pending;
        for change in durable {
            if let DirChange::Remove { aside, node, .. } = change.change {
                std::fs::remove_file(&aside).map_err(|e| Error::io(&aside, e))?;
                remove_empty_removed_dir(&aside);
                if let Some(node) = node
                    && !state.entries.values().any(|&n| n == node)
                {
                    state.nodes.remove(&node);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MonolithicFile, MonolithicOpener};
    use std::collections::BTreeSet;

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
    fn a_rename_is_undone_by_a_power_cut_before_the_directory_sync() {
        let dir = tempfile::tempdir().unwrap();
        let opener = opener(1);
        let (temp, real) = (dir.path().join("hint.tmp"), dir.path().join("hint"));
        drop(durable_file(&opener, dir.path(), "hint", b"old"));
        drop(durable_file(&opener, dir.path(), "hint.tmp", b"new"));
        opener.rename(&temp, &real).unwrap();
        assert_eq!(contents(&real), b"new");
        assert!(!temp.exists());
        assert_eq!(opener.list_dir(dir.path()).unwrap(), vec!["hint"]);
        assert_eq!(opener.controller().synced_len(&real), None);
        opener.controller().power_cut().unwrap();
        // The rename is lost: both names are back, each with its own bytes.
        assert_eq!(contents(&real), b"old");
        assert_eq!(contents(&temp), b"new");
        assert!(!dir.path().join(REMOVED_DIR).exists());
        let counters = opener.controller().counters();
        assert_eq!(counters.dir_changes_lost, 2);
        assert_eq!((counters.renames_lost, counters.removes_lost), (1, 1));
    }

    #[test]
    fn a_rename_made_durable_by_the_directory_sync_stays() {
        let dir = tempfile::tempdir().unwrap();
        let opener = opener(1);
        let (temp, real) = (dir.path().join("hint.tmp"), dir.path().join("hint"));
        drop(durable_file(&opener, dir.path(), "hint", b"old"));
        drop(durable_file(&opener, dir.path(), "hint.tmp", b"new"));
        opener.rename(&temp, &real).unwrap();
        opener.sync_dir(dir.path()).unwrap();
        assert!(!dir.path().join(REMOVED_DIR).exists());
        assert_eq!(opener.controller().synced_len(&real), Some(3));
        opener.controller().power_cut().unwrap();
        assert_eq!(contents(&real), b"new");
        assert!(!temp.exists());
        assert_eq!(opener.controller().counters().dir_changes_lost, 0);
    }

    #[test]
    fn a_renamed_file_keeps_its_history_and_its_handles() {
        let dir = tempfile::tempdir().unwrap();
        let opener = opener(1);
        let (temp, real) = (dir.path().join("seg.tmp"), dir.path().join("seg"));
        let file = opener.open(&temp, true).unwrap();
        file.append(b"synced").unwrap();
        file.sync_data().unwrap();
        opener.rename(&temp, &real).unwrap();
        opener.sync_dir(dir.path()).unwrap();
        // Written through the old handle after the rename: not synced.
        file.append(b"-lost").unwrap();
        assert_eq!(contents(&real), b"synced-lost");
        opener.controller().power_cut().unwrap();
        assert_eq!(contents(&real), b"synced");
    }

    #[test]
    fn a_file_created_then_renamed_without_a_directory_sync_vanishes() {
        let dir = tempfile::tempdir().unwrap();
        let opener = opener(1);
        let (temp, real) = (dir.path().join("a.tmp"), dir.path().join("a"));
        let file = opener.open(&temp, true).unwrap();
        file.append(b"data").unwrap();
        file.sync_data().unwrap();
        opener.rename(&temp, &real).unwrap();
        opener.controller().power_cut().unwrap();
        assert!(!temp.exists());
        assert!(!real.exists());
    }

    #[test]
    fn a_directory_whose_parent_was_not_synced_vanishes_with_its_files() {
        let root = tempfile::tempdir().unwrap();
        let opener = opener(1);
        let kept = root.path().join("kept");
        let lost = root.path().join("lost/deeper");
        opener.create_dir_all_durable(&kept).unwrap();
        opener.create_dir_all(&lost).unwrap();
        // A durable file in a directory whose own entry is not durable.
        drop(durable_file(&opener, &lost, "data", b"synced"));
        drop(durable_file(&opener, &kept, "data", b"synced"));
        opener.controller().power_cut().unwrap();
        assert!(!root.path().join("lost").exists());
        assert_eq!(contents(&kept.join("data")), b"synced");
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
