//! `cargo xtask crashtest`: kill a real writer with SIGKILL and check what
//! survived.
//!
//! The parent re-executes this binary as a child (`crashtest-child`) that
//! opens a database with sync `always` and writes from several threads:
//! single sets, deletes and batches, while another thread compacts. Before
//! each operation the child prints a `S` line describing it, and after the
//! engine acknowledges it an `A` line. The parent kills the child with
//! SIGKILL at a random moment, reads every line the child managed to print,
//! reopens the database and checks:
//!
//! - the database opens;
//! - every acknowledged write is there, with its last acknowledged value or
//!   with the value of the one operation that thread had in flight;
//! - no batch is partly applied (a thread's keys match exactly the state
//!   after its last acknowledged operation, or after its in-flight one);
//! - no value appears that was never sent.
//!
//! Each thread owns its keys, so the history of every key is the sequence of
//! one thread's operations and the check is exact. Values are unique
//! (`v<thread>.<op>.<i>`), so a phantom value cannot hide.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::engines;

pub use parking_lot_free::Stdout as LineOut;

/// Flags of `cargo xtask crashtest`.
#[derive(clap::Args, Debug, Clone)]
pub struct CrashArgs {
    /// How many kill-and-check rounds to run.
    #[arg(long, default_value_t = 100)]
    pub iterations: u64,
    /// Seed of the random choices (kill moments, operations).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The engine to test (see `engines::PERSISTENT`).
    #[arg(long, default_value = "log")]
    pub engine: String,
    /// Stop starting new rounds after this many seconds (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub duration: u64,
    /// Writer threads in the child.
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    /// The longest a child runs before it is killed, in milliseconds.
    #[arg(long, default_value_t = 400)]
    pub max_kill_ms: u64,
    /// Where to put the databases (default: a temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Encrypt the engine's files (a key file is made for the run).
    #[arg(long)]
    pub encryption: bool,
    /// Compress the engine's files: `none` or `lz4` (not for btree).
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// The key file of an encrypted run (made by the run itself).
    #[arg(skip)]
    pub key_file: Option<PathBuf>,
}

impl CrashArgs {
    /// The decoration of this run's engine files.
    pub fn decoration(&self) -> Result<engines::Decoration, String> {
        engines::Decoration::new(&self.engine, self.key_file.clone(), &self.compression)
    }

    /// A copy with a fresh key file in `root` when the run is encrypted.
    pub fn with_key_file(&self, root: &Path) -> Result<Self, String> {
        let mut args = self.clone();
        if self.encryption {
            args.key_file = Some(engines::Decoration::create_key_file(root, self.seed)?);
        }
        args.decoration()?;
        Ok(args)
    }
}

/// Flags of the hidden `crashtest-child` command.
#[derive(clap::Args, Debug, Clone)]
pub struct ChildArgs {
    /// The database directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// The engine.
    #[arg(long)]
    pub engine: String,
    /// Seed of this child's operations.
    #[arg(long)]
    pub seed: u64,
    /// Writer threads.
    #[arg(long)]
    pub threads: usize,
    /// The round number: makes values unique across rounds.
    #[arg(long)]
    pub round: u64,
    /// The key file, when the engine's files are encrypted.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// `none` or `lz4`.
    #[arg(long, default_value = "none")]
    pub compression: String,
}

impl ChildArgs {
    /// The decoration the parent asked for.
    pub fn decoration(&self) -> Result<engines::Decoration, String> {
        engines::Decoration::new(&self.engine, self.key_file.clone(), &self.compression)
    }
}

/// Keys each thread owns.
const KEYS_PER_THREAD: u64 = 40;

/// A small, seedable generator (xorshift64*): the crash test must be
/// reproducible from its seed and needs no more than this.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// One change of an operation: set a key to a value, or delete it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    Set(String, String),
    Delete(String),
}

/// Encodes an operation's changes for a `S` line: `k=v` or `k~` items.
fn encode_changes(changes: &[Change]) -> String {
    changes
        .iter()
        .map(|c| match c {
            Change::Set(k, v) => format!("{k}={v}"),
            Change::Delete(k) => format!("{k}~"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn decode_changes(items: &[&str]) -> Option<Vec<Change>> {
    items
        .iter()
        .map(|item| {
            if let Some(key) = item.strip_suffix('~') {
                Some(Change::Delete(key.to_string()))
            } else {
                let (k, v) = item.split_once('=')?;
                Some(Change::Set(k.to_string(), v.to_string()))
            }
        })
        .collect()
}

/// The child: write until killed.
pub fn child(args: &ChildArgs) -> Result<(), String> {
    let db = engines::open_decorated(&args.engine, &args.dir, &args.decoration()?)
        .map_err(|e| format!("open: {e}"))?;
    let out = Arc::new(parking_lot_free::Stdout::new());
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for tid in 0..args.threads {
        let db = Arc::clone(&db);
        let out = Arc::clone(&out);
        let seed = args.seed ^ ((tid as u64 + 1) << 32);
        let round = args.round;
        handles.push(std::thread::spawn(move || -> Result<(), String> {
            let mut rng = Rng::new(seed);
            let mut op = 0u64;
            loop {
                let changes = random_op(&mut rng, tid, round, op);
                out.line(&format!("S {tid} {op} {}", encode_changes(&changes)));
                apply(&*db, &changes).map_err(|e| format!("thread {tid} op {op}: {e}"))?;
                out.line(&format!("A {tid} {op}"));
                op += 1;
            }
        }));
    }
    {
        let db = Arc::clone(&db);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(30));
                if let Err(e) = db.compact() {
                    eprintln!("compact failed: {e}");
                }
            }
        });
    }
    join_workers(handles, "writer")?;
    stop.store(true, Ordering::Relaxed);
    Ok(())
}

/// Line-at-a-time stdout shared by the writer threads: each line is written
/// and flushed whole, so the parent never reads half a line from a live child
/// (it may from a killed one, and ignores it).
mod parking_lot_free {
    use std::io::Write;
    use std::sync::Mutex;

    /// Stdout, one whole flushed line at a time.
    pub struct Stdout(Mutex<std::io::Stdout>);

    impl Stdout {
        /// The process's stdout.
        pub fn new() -> Self {
            Self(Mutex::new(std::io::stdout()))
        }
        /// Writes `line` and a newline, and flushes.
        pub fn line(&self, line: &str) {
            let mut out = match self.0.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

fn random_op(rng: &mut Rng, tid: usize, round: u64, op: u64) -> Vec<Change> {
    let key = |rng: &mut Rng| format!("t{tid}k{}", rng.below(KEYS_PER_THREAD));
    let value = |i: u64| format!("v{round}.{tid}.{op}.{i}");
    match rng.below(10) {
        0..=5 => vec![Change::Set(key(rng), value(0))],
        6 => vec![Change::Delete(key(rng))],
        _ => {
            let n = 2 + rng.below(6);
            (0..n)
                .map(|i| {
                    if rng.below(5) == 0 {
                        Change::Delete(key(rng))
                    } else {
                        Change::Set(key(rng), value(i))
                    }
                })
                .collect()
        }
    }
}

fn apply(db: &dyn pydb_storage::StorageEngine, changes: &[Change]) -> Result<(), String> {
    match changes {
        [Change::Set(k, v)] => db
            .set(k.as_bytes(), v.as_bytes())
            .map_err(|e| e.to_string()),
        [Change::Delete(k)] => db
            .delete(k.as_bytes())
            .map(|_| ())
            .map_err(|e| e.to_string()),
        many => {
            let mut batch = pydb_storage::WriteBatch::new();
            for change in many {
                match change {
                    Change::Set(k, v) => batch.set(k.clone().into_bytes(), v.clone().into_bytes()),
                    Change::Delete(k) => batch.delete(k.clone().into_bytes()),
                };
            }
            db.write_batch(&batch).map_err(|e| e.to_string())
        }
    }
}

/// What one thread did, as far as the parent saw.
#[derive(Debug, Default)]
struct ThreadHistory {
    /// Operations in order (a thread sends op n+1 only after n is acknowledged).
    ops: Vec<Vec<Change>>,
    /// How many of them were acknowledged (a prefix).
    acked: usize,
}

/// Totals over all rounds.
#[derive(Debug, Default)]
pub struct Summary {
    /// Rounds run.
    pub iterations: u64,
    /// Acknowledged operations whose effects were checked.
    pub acked_checked: u64,
    /// Acknowledged writes missing after reopen.
    pub lost: u64,
    /// Values present that were never sent, or batches partly applied.
    pub phantom: u64,
    /// Rounds where the database did not open.
    pub failed_opens: u64,
}

impl Summary {
    /// Whether every round passed.
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.phantom == 0 && self.failed_opens == 0
    }
}

/// The parent: run `args.iterations` kill-and-check rounds.
pub fn run(args: &CrashArgs) -> Result<(), String> {
    engines::check_persistent(&args.engine)?;
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let (root, _temp) = rounds_root(args.dir.as_ref())?;
    let args = &args.with_key_file(&root)?;
    let decoration = args.decoration()?;
    let started = Instant::now();
    let mut rng = Rng::new(args.seed);
    let mut summary = Summary::default();
    for round in 0..args.iterations {
        if args.duration > 0 && started.elapsed() > Duration::from_secs(args.duration) {
            break;
        }
        let dir = root.join(format!("round-{}", round % 4));
        if round % 4 == 0 && dir.exists() {
            // Start afresh now and then so that databases stay small.
            std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let before = engines::open_decorated(&args.engine, &dir, &decoration)
            .map_err(|e| format!("round {round}: open before the child: {e}"))
            .and_then(|db| snapshot(&*db))?;
        let kill_after = Duration::from_millis(10 + rng.below(args.max_kill_ms.max(1)));
        let histories = run_child(&exe, args, &dir, round, rng.next_u64(), kill_after)?;
        check_round(args, &dir, round, &before, &histories, &mut summary);
        summary.iterations += 1;
        if round % 50 == 49 {
            eprintln!(
                "crashtest: {} rounds, {} acknowledged writes checked, {} lost, {} phantom, {} failed opens ({:.0?})",
                summary.iterations,
                summary.acked_checked,
                summary.lost,
                summary.phantom,
                summary.failed_opens,
                started.elapsed()
            );
        }
    }
    println!(
        "crashtest: engine={} files={} seed={} iterations={} acknowledged_checked={} lost={} phantom={} failed_opens={} elapsed={:.1?}",
        args.engine,
        decoration.describe(),
        args.seed,
        summary.iterations,
        summary.acked_checked,
        summary.lost,
        summary.phantom,
        summary.failed_opens,
        started.elapsed()
    );
    if summary.passed() {
        Ok(())
    } else {
        Err("crash test FAILED".into())
    }
}

fn snapshot(db: &dyn pydb_storage::StorageEngine) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for item in db
        .scan(pydb_storage::KeyRange::all())
        .map_err(|e| e.to_string())?
    {
        let (k, v) = item.map_err(|e| e.to_string())?;
        map.insert(
            String::from_utf8_lossy(&k).into_owned(),
            String::from_utf8_lossy(&v).into_owned(),
        );
    }
    Ok(map)
}

fn run_child(
    exe: &Path,
    args: &CrashArgs,
    dir: &Path,
    round: u64,
    seed: u64,
    kill_after: Duration,
) -> Result<Vec<ThreadHistory>, String> {
    let child = ChildRun {
        command: "crashtest-child",
        dir,
        round,
        seed,
    };
    let lines = child.run_until_killed(exe, args, kill_after)?;
    let mut histories: Vec<ThreadHistory> = (0..args.threads)
        .map(|_| ThreadHistory::default())
        .collect();
    for line in lines {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            ["S", tid, op, items @ ..] => {
                let (Ok(tid), Ok(op)) = (tid.parse::<usize>(), op.parse::<usize>()) else {
                    continue;
                };
                let Some(changes) = decode_changes(items) else {
                    continue;
                };
                if let Some(h) = histories.get_mut(tid)
                    && h.ops.len() == op
                {
                    h.ops.push(changes);
                }
            }
            ["A", tid, op] => {
                let (Ok(tid), Ok(op)) = (tid.parse::<usize>(), op.parse::<usize>()) else {
                    continue;
                };
                if let Some(h) = histories.get_mut(tid)
                    && h.acked == op
                    && op < h.ops.len()
                {
                    h.acked = op + 1;
                }
            }
            _ => {} // a line cut by the kill
        }
    }
    Ok(histories)
}

/// The state of one thread's keys after applying `ops` to `before`.
fn state_after(
    before: &BTreeMap<String, String>,
    prefix: &str,
    ops: &[Vec<Change>],
) -> BTreeMap<String, String> {
    let mut state: BTreeMap<String, String> = before
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for op in ops {
        for change in op {
            match change {
                Change::Set(k, v) => {
                    state.insert(k.clone(), v.clone());
                }
                Change::Delete(k) => {
                    state.remove(k);
                }
            }
        }
    }
    state
}

fn check_round(
    args: &CrashArgs,
    dir: &Path,
    round: u64,
    before: &BTreeMap<String, String>,
    histories: &[ThreadHistory],
    summary: &mut Summary,
) {
    let decoration = match args.decoration() {
        Ok(decoration) => decoration,
        Err(e) => {
            eprintln!("round {round}: {e}");
            summary.failed_opens += 1;
            return;
        }
    };
    let after = match engines::open_decorated(&args.engine, dir, &decoration)
        .and_then(|db| snapshot(&*db).map_err(|e| -> Box<dyn std::error::Error> { e.into() }))
    {
        Ok(after) => after,
        Err(e) => {
            eprintln!("round {round}: FAILED to reopen: {e}");
            summary.failed_opens += 1;
            return;
        }
    };
    for (tid, history) in histories.iter().enumerate() {
        let prefix = format!("t{tid}k");
        let actual: BTreeMap<String, String> = after
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        summary.acked_checked += history.acked as u64;
        let acked_state = state_after(before, &prefix, &history.ops[..history.acked]);
        if actual == acked_state {
            continue;
        }
        if history.ops.len() > history.acked {
            let in_flight = state_after(before, &prefix, &history.ops[..=history.acked]);
            if actual == in_flight {
                continue;
            }
        }
        // Explain the difference key by key.
        let sent: std::collections::HashSet<&str> = history
            .ops
            .iter()
            .flatten()
            .filter_map(|c| match c {
                Change::Set(_, v) => Some(v.as_str()),
                Change::Delete(_) => None,
            })
            .chain(before.values().map(String::as_str))
            .collect();
        let mut explained = false;
        for (k, v) in &actual {
            if !sent.contains(v.as_str()) {
                eprintln!("round {round}: PHANTOM {k} = {v} was never sent");
                summary.phantom += 1;
                explained = true;
            }
        }
        for (k, v) in &acked_state {
            if actual.get(k) != Some(v) {
                let in_flight_touches = history.ops.get(history.acked).is_some_and(|op| {
                    op.iter()
                        .any(|c| matches!(c, Change::Set(key, _) | Change::Delete(key) if key == k))
                });
                if !in_flight_touches {
                    eprintln!(
                        "round {round}: LOST {k}: acknowledged {v}, found {:?}",
                        actual.get(k)
                    );
                    summary.lost += 1;
                    explained = true;
                }
            }
        }
        if !explained {
            eprintln!(
                "round {round}: PARTIAL batch of thread {tid} (op {})",
                history.acked
            );
            summary.phantom += 1;
        }
    }
}

/// One child of a crash test: this binary re-executed as `command` (a
/// hidden subcommand taking [`ChildArgs`]) on the database in `dir`.
pub struct ChildRun<'a> {
    /// The hidden subcommand, e.g. `crashtest-child`.
    pub command: &'a str,
    /// The database directory.
    pub dir: &'a Path,
    /// The round number, passed on so that the child's ids are unique.
    pub round: u64,
    /// The seed of the child's random choices.
    pub seed: u64,
}

impl ChildRun<'_> {
    /// Starts the child, kills it with SIGKILL after `kill_after`, and
    /// returns every whole line it printed (the last one may be cut by the
    /// kill: callers ignore lines they cannot parse). Shared by every crash
    /// test target.
    pub fn run_until_killed(
        &self,
        exe: &Path,
        args: &CrashArgs,
        kill_after: Duration,
    ) -> Result<Vec<String>, String> {
        let mut child = Command::new(exe)
            .args([self.command, "--engine", &args.engine, "--dir"])
            .arg(self.dir)
            .args([
                "--seed",
                &self.seed.to_string(),
                "--threads",
                &args.threads.to_string(),
                "--round",
                &self.round.to_string(),
            ])
            .args(args.decoration()?.child_flags())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn child: {e}"))?;
        let stdout = child.stdout.take().ok_or("child has no stdout")?;
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        std::thread::sleep(kill_after);
        // SIGKILL: no destructor, no flush, no fsync runs in the child.
        let _ = child.kill();
        let _ = child.wait();
        reader
            .join()
            .map_err(|_| "reader thread panicked".to_string())
    }
}

/// Joins worker threads: the first error wins, and a panic is an error
/// naming the `what` thread.
pub fn join_workers(
    handles: Vec<std::thread::JoinHandle<Result<(), String>>>,
    what: &str,
) -> Result<(), String> {
    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(format!("a {what} thread panicked")),
        }
    }
    Ok(())
}

/// Where the kill-and-check rounds run: `dir` if given, else a fresh
/// temporary directory, removed when the returned guard is dropped.
pub fn rounds_root(dir: Option<&PathBuf>) -> Result<(PathBuf, Option<TempDir>), String> {
    Ok(match dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let temp = TempDir::new()?;
            (temp.0.clone(), Some(temp))
        }
    })
}

/// A temporary directory removed on drop (xtask keeps its dependencies few).
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new directory under the target directory.
    pub fn new() -> Result<Self, String> {
        let base = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("target"));
        let dir = base.join(format!("crashtest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
