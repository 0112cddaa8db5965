//! The workloads, and how one of them is run against one store.
//!
//! A [`Variant`] is a workload with its parameters (threads, batch size,
//! read share, key distribution); [`plan`] lists every variant the
//! benchmark knows. [`run`] executes one variant against one freshly opened
//! store in an empty directory and measures it; it runs inside a child
//! process (see `main.rs`) so that peak memory and bytes written belong to
//! that store alone.
//!
//! Each run has up to three phases:
//! 1. setup, not measured: for workloads that need a full database, the `n`
//!    keys are loaded in random order in batches of 1000 and flushed;
//! 2. the measured phase: every call is timed into an HDR histogram, and the
//!    phase stops early (and says so) once it passes the time limit;
//! 3. teardown, not timed but inside the I/O window: a write workload ends
//!    with a flush, so that bytes a store would write later are counted as
//!    its write amplification rather than forgotten; then the store is
//!    closed and its directory measured.
//!
//! The read workloads check what they read (every key found, no missing
//! key found, `readseq` sees all `n` keys): a store that returns nothing
//! would otherwise look very fast.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::keys::{KeyChooser, KeyDist, KeySpace};
use crate::metrics;
use crate::stores::{Handle, Result, Store, StoreConfig, StoreKind, WriteMode};

/// A workload, without its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Insert `n` keys in ascending order, unsynced.
    FillSeq,
    /// Insert `n` keys in random order, unsynced, one call per key or per
    /// batch.
    FillRandom,
    /// Insert keys in random order, each call durable when it returns.
    FillSync,
    /// Read existing keys, uniformly at random.
    ReadRandom,
    /// Read keys that do not exist.
    ReadMissing,
    /// Read every key in order with one iterator.
    ReadSeq,
    /// Read 100 keys in order from a random existing key.
    ScanRandom,
    /// Overwrite existing keys, uniformly at random, unsynced.
    Overwrite,
    /// Delete every key once, in random order, unsynced.
    DeleteRandom,
    /// Reads and unsynced overwrites of existing keys, mixed.
    Mixed,
    /// Close a database of `n` keys and time opening it again.
    Reopen,
    /// One write transaction per call: read two random keys, write each
    /// the other's value (a bank transfer). Only for transactional stores;
    /// not in [`Workload::ALL`], ask for it with `--workloads transfer`.
    Transfer,
}

impl Workload {
    /// Every workload, in the order the output lists them.
    pub const ALL: [Workload; 11] = [
        Workload::FillSeq,
        Workload::FillRandom,
        Workload::FillSync,
        Workload::ReadRandom,
        Workload::ReadMissing,
        Workload::ReadSeq,
        Workload::ScanRandom,
        Workload::Overwrite,
        Workload::DeleteRandom,
        Workload::Mixed,
        Workload::Reopen,
    ];

    /// The name used by `--workloads` and in the output.
    pub fn name(self) -> &'static str {
        match self {
            Workload::FillSeq => "fillseq",
            Workload::FillRandom => "fillrandom",
            Workload::FillSync => "fillsync",
            Workload::ReadRandom => "readrandom",
            Workload::ReadMissing => "readmissing",
            Workload::ReadSeq => "readseq",
            Workload::ScanRandom => "scanrandom",
            Workload::Overwrite => "overwrite",
            Workload::DeleteRandom => "deleterandom",
            Workload::Mixed => "mixed",
            Workload::Reopen => "reopen",
            Workload::Transfer => "transfer",
        }
    }

    /// Parses [`Workload::name`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .chain([Workload::Transfer])
            .find(|w| w.name() == s)
    }

    /// Whether every write of the workload must be durable.
    pub fn synced(self) -> bool {
        self == Workload::FillSync
    }
}

/// A workload with its parameters: one column of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    /// The workload.
    pub workload: Workload,
    /// Threads issuing calls at once.
    pub threads: usize,
    /// Keys per write call (1, or a batch written atomically).
    pub batch: usize,
    /// For `mixed`: the share of reads, in percent.
    pub read_pct: Option<u8>,
    /// Which keys reads and overwrites pick.
    pub dist: KeyDist,
}

impl Variant {
    fn new(workload: Workload) -> Self {
        Self {
            workload,
            threads: 1,
            batch: 1,
            read_pct: None,
            dist: KeyDist::Uniform,
        }
    }

    /// A short unique label, e.g. `mixed 95/5 zipfian t=4`.
    pub fn label(&self) -> String {
        let mut label = self.workload.name().to_string();
        if let Some(r) = self.read_pct {
            label.push_str(&format!(" {r}/{}", 100 - u32::from(r)));
        }
        if matches!(self.workload, Workload::Mixed | Workload::Transfer) {
            label.push(' ');
            label.push_str(self.dist.name());
        }
        if self.batch > 1 {
            label.push_str(&format!(" b={}", self.batch));
        }
        if self.threads > 1
            || matches!(
                self.workload,
                Workload::FillSync | Workload::Mixed | Workload::Transfer
            )
        {
            label.push_str(&format!(" t={}", self.threads));
        }
        label
    }
}

/// Every variant of every workload in `workloads`, in output order.
pub fn plan(workloads: &[Workload]) -> Vec<Variant> {
    let mut variants = Vec::new();
    for &w in workloads {
        let base = Variant::new(w);
        match w {
            Workload::FillRandom => {
                variants.push(base);
                variants.push(Variant {
                    batch: 1000,
                    ..base
                });
            }
            Workload::FillSync => {
                variants.push(base);
                variants.push(Variant { threads: 8, ..base });
            }
            Workload::Mixed => {
                for read_pct in [95, 50] {
                    for dist in [KeyDist::Uniform, KeyDist::Zipfian] {
                        for threads in [1, 4] {
                            variants.push(Variant {
                                threads,
                                read_pct: Some(read_pct),
                                dist,
                                ..base
                            });
                        }
                    }
                }
            }
            Workload::Transfer => {
                for dist in [KeyDist::Uniform, KeyDist::Zipfian] {
                    for threads in [1, 4, 8] {
                        variants.push(Variant {
                            threads,
                            dist,
                            ..base
                        });
                    }
                }
            }
            _ => variants.push(base),
        }
    }
    variants
}

/// The sizes of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Params {
    /// Keys in the database (and calls of most workloads).
    pub num: u64,
    /// Key size in bytes.
    pub key_size: usize,
    /// Value size in bytes.
    pub value_size: usize,
    /// Calls of `fillsync`, over all threads.
    pub sync_ops: u64,
    /// Scans of `scanrandom`.
    pub scan_ops: u64,
    /// Opens timed by `reopen`.
    pub reopen_rounds: u64,
    /// A measured phase stops after this many seconds.
    pub time_limit_secs: f64,
    /// The cache budget of stores that have their own cache, in MiB.
    pub cache_mb: u64,
    /// The fraction of each value's bytes that are random (1.0: values do
    /// not compress; 0.5: about 2:1 under lz4).
    #[serde(default = "incompressible")]
    pub value_compressibility: f64,
}

fn incompressible() -> f64 {
    1.0
}

/// One measured result: a row of the output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// The store's name.
    pub store: String,
    /// The workload's name.
    pub workload: String,
    /// The variant's label (unique within a run).
    pub label: String,
    /// Threads.
    pub threads: usize,
    /// Keys per write call.
    pub batch: usize,
    /// Key distribution of reads and overwrites.
    pub key_dist: String,
    /// For `mixed`: percent of reads.
    pub read_pct: Option<u8>,
    /// Whether every write was durable.
    pub synced: bool,
    /// Operations completed (keys, or scans, or opens).
    pub ops: u64,
    /// Length of the measured phase.
    pub secs: f64,
    /// Operations per second.
    pub ops_per_sec: f64,
    /// Median latency of one call, in microseconds.
    pub p50_us: f64,
    /// 99th percentile latency of one call.
    pub p99_us: f64,
    /// 99.9th percentile latency of one call.
    pub p999_us: f64,
    /// Bytes allocated to the store's files after the workload.
    pub disk_bytes: u64,
    /// Bytes written to storage per byte of user data written (keys plus
    /// values; keys alone for deletes); `None` for workloads that write no
    /// user data, or where `/proc/self/io` is not available.
    pub write_amp: Option<f64>,
    /// Bytes the process wrote to storage during the measured phase and its
    /// closing flush.
    pub io_write_bytes: Option<u64>,
    /// User bytes written during the measured phase.
    pub user_bytes: u64,
    /// Peak resident memory of the child process (setup included).
    pub peak_rss_bytes: Option<u64>,
    /// Whether the phase hit the time limit before finishing its calls.
    pub stopped_early: bool,
    /// For `transfer`: transactions aborted (and run again) by a conflict.
    #[serde(default)]
    pub aborts: u64,
    /// How the store was configured.
    pub settings: String,
}

/// A latency histogram in nanoseconds, from 1 ns to one hour at three
/// significant digits. Fixed bounds, because `saturating_record` on an
/// auto-resizing histogram clamps to its current (tiny) range.
fn new_histogram() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 3_600_000_000_000, 3)?)
}

/// What one thread counts while it runs.
struct Recorder {
    hist: Histogram<u64>,
    ops: u64,
    aborts: u64,
    user_bytes: u64,
    deadline: Instant,
    stopped_early: bool,
}

impl Recorder {
    fn new(deadline: Instant) -> Result<Self> {
        Ok(Self {
            hist: new_histogram()?,
            ops: 0,
            aborts: 0,
            user_bytes: 0,
            deadline,
            stopped_early: false,
        })
    }

    /// Times `call`, which performs `ops` operations writing `user_bytes`.
    fn time<T>(
        &mut self,
        ops: u64,
        user_bytes: u64,
        call: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let start = Instant::now();
        let out = call()?;
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.hist.saturating_record(nanos.max(1));
        self.ops += ops;
        self.user_bytes += user_bytes;
        Ok(out)
    }

    /// Whether the time limit has passed; remembers that it did.
    fn expired(&mut self) -> bool {
        if Instant::now() >= self.deadline {
            self.stopped_early = true;
        }
        self.stopped_early
    }
}

/// The measured phase: totals over every thread.
struct Phase {
    hist: Histogram<u64>,
    ops: u64,
    aborts: u64,
    user_bytes: u64,
    elapsed: Duration,
    stopped_early: bool,
}

/// Runs `work(thread, handle, recorder)` on `threads` threads at once, each
/// with its own handle, and merges what they recorded. The clock runs from
/// the first thread's start (once every thread holds its handle) to the last
/// thread's end, both taken by the workers themselves: the spawning thread
/// may not be scheduled until the workers are done, so its own clock would
/// miss the work.
fn run_threads<F>(store: &dyn Store, threads: usize, limit: Duration, work: F) -> Result<Phase>
where
    F: Fn(usize, &mut dyn Handle, &mut Recorder) -> Result<()> + Sync,
{
    let barrier = Barrier::new(threads);
    let outcomes = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                let work = &work;
                s.spawn(move || -> Result<(Recorder, Instant, Instant)> {
                    let handle = store.handle();
                    // Wait even after a failure, so that no thread is left
                    // at the barrier.
                    barrier.wait();
                    let mut handle = handle?;
                    let start = Instant::now();
                    let mut rec = Recorder::new(start + limit)?;
                    work(t, handle.as_mut(), &mut rec)?;
                    Ok((rec, start, Instant::now()))
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join()).collect::<Vec<_>>()
    });
    let mut phase = Phase {
        hist: new_histogram()?,
        ops: 0,
        aborts: 0,
        user_bytes: 0,
        elapsed: Duration::ZERO,
        stopped_early: false,
    };
    let mut first_start: Option<Instant> = None;
    let mut last_end: Option<Instant> = None;
    for outcome in outcomes {
        let (rec, start, end) = outcome.map_err(|_| "a benchmark thread panicked")??;
        phase.hist.add(&rec.hist)?;
        phase.ops += rec.ops;
        phase.aborts += rec.aborts;
        phase.user_bytes += rec.user_bytes;
        phase.stopped_early |= rec.stopped_early;
        first_start = Some(first_start.map_or(start, |s| s.min(start)));
        last_end = Some(last_end.map_or(end, |e| e.max(end)));
    }
    if let (Some(start), Some(end)) = (first_start, last_end) {
        phase.elapsed = end - start;
    }
    Ok(phase)
}

/// The indices `t, t + threads, t + 2 * threads, ...` below `total`: thread
/// `t`'s share of a workload's calls.
fn share(t: usize, threads: usize, total: u64) -> impl Iterator<Item = u64> {
    (t as u64..total).step_by(threads.max(1))
}

/// Loads every key in random order, in batches, and flushes.
fn load(store: &dyn Store, keys: &KeySpace, rng: &mut SmallRng) -> Result<()> {
    let mut order: Vec<u64> = (0..keys.n).collect();
    order.shuffle(rng);
    let mut handle = store.handle()?;
    for chunk in order.chunks(1000) {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = chunk
            .iter()
            .map(|&i| (keys.key_vec(i), keys.value(i).to_vec()))
            .collect();
        handle.put_batch(&pairs)?;
    }
    drop(handle);
    store.flush()
}

/// Runs `variant` against a new `kind` store in the empty directory `dir`.
pub fn run(
    kind: &StoreKind,
    variant: &Variant,
    params: &Params,
    dir: &std::path::Path,
) -> Result<Row> {
    let mut rng = SmallRng::seed_from_u64(0x5eed);
    let keys = KeySpace::new(params.num, params.key_size, params.value_size, &mut rng)
        .with_random_fraction(params.value_compressibility);
    let config = StoreConfig {
        mode: if variant.workload.synced() {
            WriteMode::Synced
        } else {
            WriteMode::Unsynced
        },
        cache_bytes: params.cache_mb.saturating_mul(1 << 20),
        data_bytes_hint: params.num.saturating_mul(keys.pair_bytes()),
    };
    let limit = Duration::from_secs_f64(params.time_limit_secs.max(0.001));
    let threads = variant.threads.max(1);
    let n = keys.n;
    let store = (kind.open)(dir, &config)?;

    let needs_data = !matches!(
        variant.workload,
        Workload::FillSeq | Workload::FillRandom | Workload::FillSync
    );
    if needs_data {
        load(store.as_ref(), &keys, &mut rng)?;
    }

    if variant.workload == Workload::Reopen {
        drop(store);
        return reopen(kind, variant, params, dir, &config, &keys);
    }

    let io_before = metrics::io_write_bytes();
    let keys = &keys;
    let pair = keys.pair_bytes();
    let phase = match variant.workload {
        Workload::FillSeq => run_threads(store.as_ref(), 1, limit, |_, h, rec| {
            let mut key = Vec::new();
            for i in 0..n {
                if rec.expired() {
                    break;
                }
                keys.key(i, &mut key);
                rec.time(1, pair, || h.put(&key, keys.value(i)))?;
            }
            Ok(())
        })?,
        Workload::FillRandom | Workload::FillSync => {
            let total = if variant.workload == Workload::FillSync {
                params.sync_ops.min(n)
            } else {
                n
            };
            let mut order: Vec<u64> = (0..n).collect();
            order.shuffle(&mut rng);
            order.truncate(usize::try_from(total)?);
            let order = &order;
            let batch = variant.batch.max(1);
            run_threads(store.as_ref(), threads, limit, |t, h, rec| {
                let mut key = Vec::new();
                if batch == 1 {
                    for j in share(t, threads, total) {
                        if rec.expired() {
                            break;
                        }
                        let i = order[usize::try_from(j)?];
                        keys.key(i, &mut key);
                        rec.time(1, pair, || h.put(&key, keys.value(i)))?;
                    }
                    return Ok(());
                }
                for (c, chunk) in order.chunks(batch).enumerate() {
                    if c % threads != t {
                        continue;
                    }
                    if rec.expired() {
                        break;
                    }
                    let pairs: Vec<(Vec<u8>, Vec<u8>)> = chunk
                        .iter()
                        .map(|&i| (keys.key_vec(i), keys.value(i).to_vec()))
                        .collect();
                    let count = chunk.len() as u64;
                    rec.time(count, count * pair, || h.put_batch(&pairs))?;
                }
                Ok(())
            })?
        }
        Workload::ReadRandom | Workload::ReadMissing => {
            let missing = variant.workload == Workload::ReadMissing;
            run_threads(store.as_ref(), threads, limit, |t, h, rec| {
                let mut rng = SmallRng::seed_from_u64(t as u64 + 1);
                let chooser = KeyChooser::new(variant.dist, n);
                let mut key = Vec::new();
                for _ in share(t, threads, n) {
                    if rec.expired() {
                        break;
                    }
                    let i = chooser.next(&mut rng) + if missing { n } else { 0 };
                    keys.key(i, &mut key);
                    let found = rec.time(1, 0, || h.get(&key))?;
                    match (missing, found) {
                        (false, None) => return Err(format!("key {i} not found").into()),
                        (true, Some(_)) => {
                            return Err(format!("missing key {i} was found").into());
                        }
                        (false, Some(len)) if len != keys.value_size() => {
                            return Err(format!("key {i}: value of {len} bytes").into());
                        }
                        _ => {}
                    }
                }
                Ok(())
            })?
        }
        Workload::ReadSeq => run_threads(store.as_ref(), 1, limit, |_, h, rec| {
            let mut seen = 0u64;
            let mut last = Instant::now();
            h.scan_all(&mut |_len| {
                let now = Instant::now();
                let nanos = u64::try_from((now - last).as_nanos()).unwrap_or(u64::MAX);
                rec.hist.saturating_record(nanos.max(1));
                last = now;
                seen += 1;
            })?;
            rec.ops = seen;
            if seen != n {
                return Err(format!("readseq saw {seen} keys, expected {n}").into());
            }
            Ok(())
        })?,
        Workload::ScanRandom => run_threads(store.as_ref(), threads, limit, |t, h, rec| {
            let mut rng = SmallRng::seed_from_u64(t as u64 + 1);
            let chooser = KeyChooser::new(KeyDist::Uniform, n);
            let mut key = Vec::new();
            for _ in share(t, threads, params.scan_ops) {
                if rec.expired() {
                    break;
                }
                let i = chooser.next(&mut rng);
                keys.key(i, &mut key);
                let read = rec.time(1, 0, || h.scan(&key, 100))?;
                let expected = (n - i).min(100);
                if read as u64 != expected {
                    return Err(
                        format!("scan from key {i} read {read}, expected {expected}").into(),
                    );
                }
            }
            Ok(())
        })?,
        Workload::Overwrite => run_threads(store.as_ref(), threads, limit, |t, h, rec| {
            let mut rng = SmallRng::seed_from_u64(t as u64 + 1);
            let chooser = KeyChooser::new(variant.dist, n);
            let mut key = Vec::new();
            for _ in share(t, threads, n) {
                if rec.expired() {
                    break;
                }
                let i = chooser.next(&mut rng);
                keys.key(i, &mut key);
                // A different value than the loaded one, of the same size.
                rec.time(1, pair, || h.put(&key, keys.value(i + 1)))?;
            }
            Ok(())
        })?,
        Workload::DeleteRandom => {
            let mut order: Vec<u64> = (0..n).collect();
            order.shuffle(&mut rng);
            let order = &order;
            let key_bytes = keys.key_size() as u64;
            run_threads(store.as_ref(), threads, limit, |t, h, rec| {
                let mut key = Vec::new();
                for j in share(t, threads, n) {
                    if rec.expired() {
                        break;
                    }
                    keys.key(order[usize::try_from(j)?], &mut key);
                    rec.time(1, key_bytes, || h.delete(&key))?;
                }
                Ok(())
            })?
        }
        Workload::Mixed => {
            let read_pct = u64::from(variant.read_pct.unwrap_or(95));
            run_threads(store.as_ref(), threads, limit, |t, h, rec| {
                let mut rng = SmallRng::seed_from_u64(t as u64 + 1);
                let chooser = KeyChooser::new(variant.dist, n);
                let mut key = Vec::new();
                for j in share(t, threads, n) {
                    if rec.expired() {
                        break;
                    }
                    let i = chooser.next(&mut rng);
                    keys.key(i, &mut key);
                    // Decide by a hash of the call number so that every
                    // store sees the same sequence of reads and writes.
                    if crate::keys::mix(j) % 100 < read_pct {
                        let found = rec.time(1, 0, || h.get(&key))?;
                        if found.is_none() {
                            return Err(format!("key {i} not found").into());
                        }
                    } else {
                        rec.time(1, pair, || h.put(&key, keys.value(i + j)))?;
                    }
                }
                Ok(())
            })?
        }
        Workload::Transfer => run_threads(store.as_ref(), threads, limit, |t, h, rec| {
            let mut rng = SmallRng::seed_from_u64(t as u64 + 1);
            let chooser = KeyChooser::new(variant.dist, n);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for _ in share(t, threads, n) {
                if rec.expired() {
                    break;
                }
                let i = chooser.next(&mut rng);
                let mut j = chooser.next(&mut rng);
                if j == i {
                    j = (i + 1) % n.max(1);
                }
                keys.key(i, &mut a);
                keys.key(j, &mut b);
                let aborts = rec.time(1, 2 * pair, || h.transfer(&a, &b))?;
                rec.aborts += aborts;
            }
            Ok(())
        })?,
        Workload::Reopen => return Err("reopen is handled above".into()),
    };

    // Writes end with a flush inside the I/O window (see the module doc).
    if phase.user_bytes > 0 {
        store.flush()?;
    }
    drop(store);
    let io_after = metrics::io_write_bytes();
    let io_write_bytes = io_before.zip(io_after).map(|(b, a)| a.saturating_sub(b));
    let write_amp = match io_write_bytes {
        Some(io) if phase.user_bytes > 0 => Some(io as f64 / phase.user_bytes as f64),
        _ => None,
    };
    Ok(row(
        kind,
        variant,
        &config,
        &phase,
        metrics::disk_bytes(dir)?,
        write_amp,
        io_write_bytes,
    ))
}

/// `reopen`: the store in `dir` holds `n` keys and is closed; time opening
/// it `params.reopen_rounds` times, closing it in between (not timed).
fn reopen(
    kind: &StoreKind,
    variant: &Variant,
    params: &Params,
    dir: &std::path::Path,
    config: &StoreConfig,
    keys: &KeySpace,
) -> Result<Row> {
    let rounds = params.reopen_rounds.max(1);
    let mut hist = new_histogram()?;
    let mut total = Duration::ZERO;
    let io_before = metrics::io_write_bytes();
    for _ in 0..rounds {
        let start = Instant::now();
        let store = (kind.open)(dir, config)?;
        let took = start.elapsed();
        // A store that opened lazily must still hold the data.
        let mut handle = store.handle()?;
        if keys.n > 0 && handle.get(&keys.key_vec(keys.n / 2))?.is_none() {
            return Err("after reopening, a loaded key is missing".into());
        }
        drop(handle);
        drop(store);
        hist.saturating_record(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1));
        total += took;
    }
    let io_after = metrics::io_write_bytes();
    let phase = Phase {
        hist,
        ops: rounds,
        aborts: 0,
        user_bytes: 0,
        elapsed: total,
        stopped_early: false,
    };
    Ok(row(
        kind,
        variant,
        config,
        &phase,
        metrics::disk_bytes(dir)?,
        None,
        io_before.zip(io_after).map(|(b, a)| a.saturating_sub(b)),
    ))
}

fn row(
    kind: &StoreKind,
    variant: &Variant,
    config: &StoreConfig,
    phase: &Phase,
    disk_bytes: u64,
    write_amp: Option<f64>,
    io_write_bytes: Option<u64>,
) -> Row {
    let secs = phase.elapsed.as_secs_f64();
    let us = |q: f64| phase.hist.value_at_quantile(q) as f64 / 1000.0;
    Row {
        store: kind.name.to_string(),
        workload: variant.workload.name().to_string(),
        label: variant.label(),
        threads: variant.threads,
        batch: variant.batch,
        key_dist: variant.dist.name().to_string(),
        read_pct: variant.read_pct,
        synced: variant.workload.synced(),
        ops: phase.ops,
        secs,
        ops_per_sec: if secs > 0.0 {
            phase.ops as f64 / secs
        } else {
            0.0
        },
        p50_us: us(0.5),
        p99_us: us(0.99),
        p999_us: us(0.999),
        disk_bytes,
        write_amp,
        io_write_bytes,
        user_bytes: phase.user_bytes,
        peak_rss_bytes: metrics::peak_rss_bytes(),
        stopped_early: phase.stopped_early,
        aborts: phase.aborts,
        settings: (kind.settings)(config),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique() {
        let variants = plan(&Workload::ALL);
        let mut labels: Vec<String> = variants.iter().map(Variant::label).collect();
        let count = labels.len();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), count, "{labels:?}");
    }

    #[test]
    fn the_clock_covers_the_work_of_every_thread() {
        // The spawning thread may sleep through the whole phase; the
        // measured time must still include the work (a bug once timed only
        // the join and reported a billion reads per second).
        let store = (crate::stores::find("pydb-memory").unwrap().open)(
            std::path::Path::new("."),
            &StoreConfig {
                mode: WriteMode::Unsynced,
                cache_bytes: 0,
                data_bytes_hint: 0,
            },
        )
        .unwrap();
        for threads in [1, 3] {
            let phase = run_threads(
                store.as_ref(),
                threads,
                Duration::from_secs(60),
                |_, _, rec| {
                    rec.time(1, 0, || {
                        std::thread::sleep(Duration::from_millis(30));
                        Ok(())
                    })
                },
            )
            .unwrap();
            assert_eq!(phase.ops, threads as u64);
            assert!(
                phase.elapsed >= Duration::from_millis(30),
                "{:?}",
                phase.elapsed
            );
        }
    }

    #[test]
    fn names_round_trip() {
        for w in Workload::ALL {
            assert_eq!(Workload::parse(w.name()), Some(w));
        }
    }

    #[test]
    fn every_workload_runs_on_the_memory_store() {
        let kind = crate::stores::find("pydb-memory").unwrap();
        let params = Params {
            num: 300,
            key_size: 16,
            value_size: 32,
            sync_ops: 50,
            scan_ops: 20,
            reopen_rounds: 1,
            time_limit_secs: 30.0,
            cache_mb: 8,
            value_compressibility: 1.0,
        };
        for variant in plan(&Workload::ALL) {
            if variant.workload.synced() || variant.workload == Workload::Reopen {
                continue;
            }
            let dir = tempfile::tempdir().unwrap();
            let row = run(&kind, &variant, &params, dir.path()).unwrap();
            assert!(row.ops > 0, "{}: {row:?}", variant.label());
        }
    }
}
