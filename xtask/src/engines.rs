//! The engines the crash test can open, by name, with settings that make a
//! short run exercise the interesting paths: small segments (so writes roll
//! over often) and eager compaction (so compactions run while the child
//! writes and when it is killed). Their files can be encrypted and/or
//! lz4-compressed ([`Decoration`]), through the same `File` decorators a
//! database opened with `--encryption-key-file` and `--compression lz4`
//! uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pydb_file::encrypted::BLOCK_SIZE as ENCRYPTED_BLOCK_SIZE;
use pydb_file::keys::{KeyMaterial, WrappedKey};
use pydb_file::{CompressedOpener, EncryptedOpener, MonolithicOpener};
use pydb_storage::{
    BTreeOptions, EngineConfig, LogOptions, LsmOptions, StorageEngine, open_engine,
    open_engine_with,
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

/// How the engine's files are decorated: encrypted with the data key that
/// `key_file` (and the wrapped key beside it) give, and/or lz4-compressed.
#[derive(Debug, Clone, Default)]
pub struct Decoration {
    /// The key material file; the wrapped data key is at
    /// [`wrapped_key_path`] of it.
    pub key_file: Option<PathBuf>,
    /// Whether files are lz4-compressed.
    pub lz4: bool,
}

/// Where the wrapped data key of a key file is kept.
pub fn wrapped_key_path(key_file: &Path) -> PathBuf {
    key_file.with_extension("wrapped")
}

impl Decoration {
    /// Parses `--compression` (`none` or `lz4`); refuses lz4 on the B+tree,
    /// whose in-place page writes a compressed file refuses.
    pub fn new(engine: &str, key_file: Option<PathBuf>, compression: &str) -> Result<Self, String> {
        let lz4 = match compression {
            "none" => false,
            "lz4" => true,
            other => return Err(format!("unknown compression {other}; use none or lz4")),
        };
        if lz4 && engine == "btree" {
            return Err(
                "lz4 does not apply to the btree engine (pages are written in place)".into(),
            );
        }
        Ok(Self { key_file, lz4 })
    }

    /// Writes a new key file and its wrapped data key into `dir`; returns
    /// the key file's path. The parent does this once per run, and every
    /// child opens with it, as a database opened with
    /// `--encryption-key-file` does.
    pub fn create_key_file(dir: &Path, seed: u64) -> Result<PathBuf, String> {
        let path = dir.join("crashtest.key");
        let material = format!("crashtest key material, seed {seed}, at least 32 bytes long");
        std::fs::write(&path, &material).map_err(|e| format!("{}: {e}", path.display()))?;
        let material = KeyMaterial::load(&path).map_err(|e| e.to_string())?;
        let (_, wrapped) = WrappedKey::generate(&material);
        let wrapped_path = wrapped_key_path(&path);
        std::fs::write(&wrapped_path, wrapped.encode())
            .map_err(|e| format!("{}: {e}", wrapped_path.display()))?;
        Ok(path)
    }

    /// The flags that give a child process this decoration.
    pub fn child_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if let Some(key) = &self.key_file {
            flags.push("--key-file".to_string());
            flags.push(key.display().to_string());
        }
        if self.lz4 {
            flags.push("--compression".to_string());
            flags.push("lz4".to_string());
        }
        flags
    }

    /// What the summary line says.
    pub fn describe(&self) -> &'static str {
        match (self.key_file.is_some(), self.lz4) {
            (false, false) => "plain",
            (true, false) => "encrypted",
            (false, true) => "lz4",
            (true, true) => "lz4+encrypted",
        }
    }
}

/// Opens engine `name` in `dir` with sync `always`, through the engine
/// registry.
pub fn open(name: &str, dir: &Path) -> Result<Arc<dyn StorageEngine>, OpenError> {
    open_decorated(name, dir, &Decoration::default())
}

/// Opens engine `name` in `dir` with sync `always`, its files decorated as
/// `decoration` says.
pub fn open_decorated(
    name: &str,
    dir: &Path,
    decoration: &Decoration,
) -> Result<Arc<dyn StorageEngine>, OpenError> {
    check_persistent(name)?;
    let mut config = EngineConfig::from_name(name)?;
    config.log = log_options();
    config.btree = btree_options();
    config.lsm = lsm_options();
    let key = match &decoration.key_file {
        Some(path) => {
            let material = KeyMaterial::load(path)?;
            let wrapped = WrappedKey::decode(&std::fs::read(wrapped_key_path(path))?)?;
            // Whole pages per encrypted block, as the facade does.
            config.btree.page_size = config.btree.page_size.max(ENCRYPTED_BLOCK_SIZE);
            Some(wrapped.unwrap(&material)?)
        }
        None => None,
    };
    Ok(match (key, decoration.lz4) {
        (None, false) => open_engine(dir, &config)?,
        (Some(key), false) => {
            open_engine_with(dir, EncryptedOpener::new(MonolithicOpener, key), &config)?
        }
        (None, true) => open_engine_with(dir, CompressedOpener::new(MonolithicOpener), &config)?,
        (Some(key), true) => open_engine_with(
            dir,
            CompressedOpener::new(EncryptedOpener::new(MonolithicOpener, key)),
            &config,
        )?,
    })
}
