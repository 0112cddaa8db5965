//! The engine registry: the one place that turns an engine's *name* and
//! options into an open engine.
//!
//! Everything above the storage layer picks its engine at run time: the
//! `Db` facade from `--engine`, the crash test and the benchmark from their
//! command lines, the shared test suites from their lists of kinds. They
//! all come here, so that adding an engine means adding it once: a variant
//! of [`EngineKind`] (with its name) and an arm in [`open_engine_with`].
//!
//! The registry hands out `Arc<dyn StorageEngine>`: the choice of engine,
//! index and file type is made here, once, and each combination is a
//! separately monomorphized engine (the log engine is generic over its
//! index and its files); callers above see only the trait.
//!
//! [`EngineKind`] and [`IndexKind`] are deliberately exhaustive: adding an
//! engine makes the compiler point at every `match` that must learn it
//! (its id in the `PYDB` file, its help text), instead of a wildcard arm
//! silently doing the wrong thing.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use pydb_file::{FileOpener, MmapOpener, MonolithicOpener};
use pydb_index::{BPlusTreeIndex, BTreeIndex, InMemoryIndex, Index, SkipListIndex};
use pydb_wal::SyncPolicy;

use crate::{
    AppendOnlyLogStorage, BTreeOptions, BTreeStorage, Error, Location, LogOptions, LsmOptions,
    LsmStorage, MemoryStorage, Result, StorageEngine,
};

/// Which storage engine holds the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EngineKind {
    /// The append-only log engine (Bitcask): a log of records and an
    /// in-memory index of where each key's latest value is. The default.
    #[default]
    Log,
    /// The B+tree engine: pages, a buffer pool and a write-ahead log.
    BTree,
    /// The LSM-tree engine: a memtable, sorted tables and compaction.
    Lsm,
    /// Everything in memory; nothing is written to disk.
    Memory,
}

impl EngineKind {
    /// Every engine, in the order help texts list them.
    pub const ALL: &'static [EngineKind] = &[
        EngineKind::Log,
        EngineKind::BTree,
        EngineKind::Lsm,
        EngineKind::Memory,
    ];

    /// The name used on the command line, in the `PYDB` file and in messages.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Log => "log",
            EngineKind::BTree => "btree",
            EngineKind::Lsm => "lsm",
            EngineKind::Memory => "memory",
        }
    }

    /// Whether the engine keeps its data in a directory.
    pub fn is_persistent(self) -> bool {
        !matches!(self, EngineKind::Memory)
    }

    /// Whether the engine keeps an in-memory index chosen by [`IndexKind`].
    pub fn uses_index(self) -> bool {
        matches!(self, EngineKind::Log)
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EngineKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase();
        EngineKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.name() == lower)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown engine '{s}' (expected {})",
                    names(EngineKind::ALL.iter().map(|k| k.name()))
                ))
            })
    }
}

/// Which in-memory index the log engine uses to find a key's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IndexKind {
    /// A hash map: fastest point lookups; range scans visit every key.
    Hash,
    /// `std`'s `BTreeMap`: ordered.
    BTree,
    /// A skip list written in `pydb-index`.
    SkipList,
    /// A B+tree written in `pydb-index` that keeps each key's first 8 bytes
    /// inline in its nodes: ordered, the default.
    #[default]
    BPlusTree,
}

impl IndexKind {
    /// Every index, in the order help texts list them.
    pub const ALL: &'static [IndexKind] = &[
        IndexKind::Hash,
        IndexKind::BTree,
        IndexKind::SkipList,
        IndexKind::BPlusTree,
    ];

    /// The name used on the command line and in messages.
    pub fn name(self) -> &'static str {
        match self {
            IndexKind::Hash => "hash",
            IndexKind::BTree => "btree",
            IndexKind::SkipList => "skiplist",
            IndexKind::BPlusTree => "bplustree",
        }
    }
}

impl fmt::Display for IndexKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for IndexKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase();
        IndexKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.name() == lower)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown index '{s}' (expected {})",
                    names(IndexKind::ALL.iter().map(|k| k.name()))
                ))
            })
    }
}

/// "a, b or c".
fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => (*last).to_string(),
        None => String::new(),
    }
}

/// Everything needed to open an engine by name: which engine, which index
/// (for the log engine), and each engine's own options.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    /// The engine.
    pub engine: EngineKind,
    /// The log engine's index.
    pub index: IndexKind,
    /// The log engine's options.
    pub log: LogOptions,
    /// The B+tree engine's options.
    pub btree: BTreeOptions,
    /// The LSM engine's options.
    pub lsm: LsmOptions,
}

impl EngineConfig {
    /// The default options of `engine`.
    pub fn new(engine: EngineKind) -> Self {
        Self {
            engine,
            ..Self::default()
        }
    }

    /// Parses a configuration name: an engine (`log`, `btree`, `memory`), or
    /// the log engine with its index (`log-hash`, `log-btree`,
    /// `log-skiplist`), as the crash test and the benchmark name them.
    pub fn from_name(name: &str) -> Result<Self> {
        if let Some(index) = name.strip_prefix("log-") {
            let mut config = Self::new(EngineKind::Log);
            config.index = index.parse()?;
            return Ok(config);
        }
        Ok(Self::new(name.parse()?))
    }

    /// The same configuration with `sync` as every engine's sync policy.
    pub fn with_sync(mut self, sync: SyncPolicy) -> Self {
        self.log.sync_policy = sync;
        self.btree.sync = sync;
        self.lsm.sync_policy = sync;
        self
    }

    /// The sync policy of the chosen engine.
    pub fn sync(&self) -> SyncPolicy {
        match self.engine {
            EngineKind::BTree => self.btree.sync,
            EngineKind::Lsm => self.lsm.sync_policy,
            EngineKind::Log | EngineKind::Memory => self.log.sync_policy,
        }
    }
}

/// Opens (or creates) the engine of `config` in `dir`, with each engine's
/// default files: memory-mapped segments for the log engine (reads copy out
/// of the map), plain `pread`/`pwrite` files for the B+tree (its buffer pool
/// is its cache). The memory engine ignores `dir`.
pub fn open_engine(dir: &Path, config: &EngineConfig) -> Result<Arc<dyn StorageEngine>> {
    match config.engine {
        EngineKind::Log => open_engine_with(dir, MmapOpener::lock_dir(dir)?, config),
        EngineKind::BTree | EngineKind::Lsm | EngineKind::Memory => {
            open_engine_with(dir, MonolithicOpener, config)
        }
    }
}

/// Opens (or creates) the engine of `config` in `dir` on files from
/// `opener`: a fault-injecting opener in the fault suite, an encrypting or
/// compressing one over a plain opener.
pub fn open_engine_with<O>(
    dir: &Path,
    opener: O,
    config: &EngineConfig,
) -> Result<Arc<dyn StorageEngine>>
where
    O: FileOpener + 'static,
{
    fn log<O: FileOpener + 'static, I: Index<Location> + Default + 'static>(
        dir: &Path,
        opener: O,
        options: LogOptions,
    ) -> Result<Arc<dyn StorageEngine>> {
        Ok(Arc::new(AppendOnlyLogStorage::open_with(
            dir,
            opener,
            I::default(),
            options,
        )?))
    }
    match config.engine {
        EngineKind::Memory => Ok(Arc::new(MemoryStorage::new())),
        EngineKind::Log => match config.index {
            IndexKind::Hash => log::<O, InMemoryIndex<Location>>(dir, opener, config.log.clone()),
            IndexKind::BTree => log::<O, BTreeIndex<Location>>(dir, opener, config.log.clone()),
            IndexKind::BPlusTree => {
                log::<O, BPlusTreeIndex<Location>>(dir, opener, config.log.clone())
            }
            IndexKind::SkipList => {
                log::<O, SkipListIndex<Location>>(dir, opener, config.log.clone())
            }
        },
        EngineKind::Lsm => Ok(Arc::new(LsmStorage::open_with(
            dir,
            opener,
            config.lsm.clone(),
        )?)),
        EngineKind::BTree => Ok(Arc::new(BTreeStorage::open_with(
            dir,
            config.btree.clone(),
            opener,
        )?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for &engine in EngineKind::ALL {
            assert_eq!(engine.name().parse::<EngineKind>().unwrap(), engine);
        }
        for &index in IndexKind::ALL {
            assert_eq!(index.name().parse::<IndexKind>().unwrap(), index);
        }
        assert!("trie".parse::<IndexKind>().is_err());
        let err = "lsmx".parse::<EngineKind>().unwrap_err().to_string();
        assert!(err.contains("log, btree, lsm or memory"), "{err}");
    }

    #[test]
    fn config_names_pick_engine_and_index() {
        let c = EngineConfig::from_name("log-skiplist").unwrap();
        assert_eq!((c.engine, c.index), (EngineKind::Log, IndexKind::SkipList));
        let c = EngineConfig::from_name("btree").unwrap();
        assert_eq!(c.engine, EngineKind::BTree);
        assert!(EngineConfig::from_name("log-trie").is_err());
    }

    #[test]
    fn every_engine_opens_and_reopens_with_its_data() {
        for &engine in EngineKind::ALL {
            let dir = tempfile::tempdir().unwrap();
            let config = EngineConfig::new(engine).with_sync(SyncPolicy::Never);
            let db = open_engine(dir.path(), &config).unwrap();
            db.set(b"k", b"v").unwrap();
            db.flush().unwrap();
            drop(db);
            let db = open_engine(dir.path(), &config).unwrap();
            let expected = engine.is_persistent().then(|| bytes::Bytes::from("v"));
            assert_eq!(db.get(b"k").unwrap(), expected, "{engine}");
        }
    }
}
