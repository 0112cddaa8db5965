//! The engines the crash test can open, by name, with settings that make a
//! short run exercise the interesting paths: small segments (so writes roll
//! over often) and eager compaction (so compactions run while the child
//! writes and when it is killed).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pydb_storage::{
    BTreeOptions, EngineConfig, LogOptions, LsmOptions, StorageEngine, open_engine,
};
use pydb_wal::SyncPolicy;

/// The persistent engines `--engine` accepts.
pub const PERSISTENT: &[&str] = &[
    "log",
    "log-btree",
    "log-hash",
    "log-skiplist",
    "btree",
    "lsm",
];

/// The error type of opening an engine.
pub type OpenError = Box<dyn std::error::Error>;

/// Fails unless `name` is a persistent engine.
pub fn check_persistent(name: &str) -> Result<(), String> {
    if PERSISTENT.contains(&name) {
        Ok(())
    } else {
        Err(format!(
            "unknown engine {name}; persistent engines: {}",
            PERSISTENT.join(", ")
        ))
    }
}

fn log_options() -> LogOptions {
    LogOptions {
        sync_policy: SyncPolicy::Always,
        max_segment_size: 32 << 10,
        compaction_threshold: 0.3,
        compaction_min_dead_bytes: 4 << 10,
        background_compaction: true,
        compaction_interval: Duration::from_millis(20),
        ..LogOptions::default()
    }
}

/// Small pages and a small pool, so that splits, evictions and write-backs
/// happen early; checkpoints sized by the dirty pages of that pool (the
/// engine's rule: from 16 KiB of WAL, once it holds twice the dirty pages,
/// so by 128 KiB at the latest) so that they run while the child is killed.
fn btree_options() -> BTreeOptions {
    BTreeOptions {
        page_size: 1024,
        pool_bytes: 64 << 10,
        sync: SyncPolicy::Always,
        checkpoint_min_bytes: 16 << 10,
        checkpoint_bytes: 256 << 10,
        ..BTreeOptions::default()
    }
}

/// A 16 KiB memtable and small tables, so that flushes and compactions
/// run while the child is killed.
fn lsm_options() -> LsmOptions {
    LsmOptions {
        sync_policy: SyncPolicy::Always,
        memtable_size: 16 << 10,
        block_size: 1024,
        l0_compaction_trigger: 2,
        level1_size: 64 << 10,
        level_size_ratio: 4,
        target_file_size: 16 << 10,
        ..LsmOptions::default()
    }
}

/// Opens engine `name` in `dir` with sync `always`, through the engine
/// registry.
pub fn open(name: &str, dir: &Path) -> Result<Arc<dyn StorageEngine>, OpenError> {
    check_persistent(name)?;
    let mut config = EngineConfig::from_name(name)?;
    config.log = log_options();
    config.btree = btree_options();
    config.lsm = lsm_options();
    Ok(open_engine(dir, &config)?)
}
