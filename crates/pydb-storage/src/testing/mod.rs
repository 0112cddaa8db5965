//! Test suites written once and run on every engine: the conformance suite
//! (the `StorageEngine` contract), the model property test (random
//! operations against [`MemoryStorage`](crate::MemoryStorage)) and the
//! fault suite (injected faults and power cuts). Built only
//! with the `testing` feature.
//!
//! An engine in any crate runs them with one line each, after describing
//! itself with [`TestEngine`]:
//!
//! ```ignore
//! #[derive(Debug)]
//! struct MyEngine;
//! impl pydb_storage::testing::TestEngine for MyEngine {
//!     fn open(&self, dir: &Path) -> pydb_storage::Result<Box<dyn StorageEngine>> { ... }
//! }
//! pydb_storage::conformance_suite!(my_engine, MyEngine);
//! pydb_storage::model_suite!(my_engine_model, MyEngine);
//! pydb_storage::fault_suite!(my_engine_faults, |dir, opener| MyEngine::open_with(dir, opener));
//! ```
//!
//! pydb-storage's own engines run them in `tests/conformance.rs` and
//! `tests/model.rs` and `tests/faults.rs`.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

pub mod conformance;
pub mod faults;
pub mod model;

use std::path::Path;

use crate::{Result, StorageEngine};

/// An engine as the suites see it: how to open it in a directory, and what
/// it promises beyond the trait.
pub trait TestEngine: std::fmt::Debug + Sync {
    /// Opens (or reopens) the engine in `dir`, with small settings so that
    /// the tests cross segment, page and table boundaries.
    fn open(&self, dir: &Path) -> Result<Box<dyn StorageEngine>>;

    /// Whether data survives closing and reopening the directory.
    fn persistent(&self) -> bool {
        true
    }

    /// The engine's key and value limits, `(max_key, max_value)`, if the
    /// tests should check them.
    fn limits(&self) -> Option<(usize, usize)> {
        None
    }
}

/// An engine of one [`TestEngine`] kind in its own temporary directory.
#[derive(Debug)]
pub struct TestDb<'a> {
    /// What opened it.
    pub kind: &'a dyn TestEngine,
    /// Its directory, removed when dropped.
    pub dir: tempfile::TempDir,
    engine: Option<Box<dyn StorageEngine>>,
}

impl<'a> TestDb<'a> {
    /// A fresh engine of `kind`.
    pub fn new(kind: &'a dyn TestEngine) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let engine = kind.open(dir.path()).unwrap();
        Self {
            kind,
            dir,
            engine: Some(engine),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &dyn StorageEngine {
        self.engine.as_deref().unwrap()
    }

    /// Closes and reopens the engine from its directory. Returns false (and
    /// keeps the engine) for an engine that persists nothing.
    pub fn reopen(&mut self) -> bool {
        if !self.kind.persistent() {
            return false;
        }
        drop(self.engine.take());
        self.engine = Some(self.kind.open(self.dir.path()).unwrap());
        true
    }
}

/// Runs the whole conformance suite on an engine: one `#[test]` per
/// contract rule, in a module called `$name`. `$engine` is an expression
/// whose value implements [`TestEngine`].
#[macro_export]
macro_rules! conformance_suite {
    ($name:ident, $engine:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn set_get() {
                $crate::testing::conformance::set_get(&$engine)
            }
            #[test]
            fn overwrite() {
                $crate::testing::conformance::overwrite(&$engine)
            }
            #[test]
            fn delete_and_delete_missing() {
                $crate::testing::conformance::delete_and_delete_missing(&$engine)
            }
            #[test]
            fn empty_key_is_an_error() {
                $crate::testing::conformance::empty_key_is_an_error(&$engine)
            }
            #[test]
            fn size_limits() {
                $crate::testing::conformance::size_limits(&$engine)
            }
            #[test]
            fn huge_key_is_refused() {
                $crate::testing::conformance::huge_key_is_refused(&$engine)
            }
            #[test]
            fn batches_apply_in_order() {
                $crate::testing::conformance::batches_apply_in_order(&$engine)
            }
            #[test]
            fn owned_batches_apply_as_borrowed_ones() {
                $crate::testing::conformance::owned_batches_apply_as_borrowed_ones(&$engine)
            }
            #[test]
            fn scan_bounds() {
                $crate::testing::conformance::scan_bounds(&$engine)
            }
            #[test]
            fn scan_after_deletes_and_across_chunks() {
                $crate::testing::conformance::scan_after_deletes_and_across_chunks(&$engine)
            }
            #[test]
            fn scan_with_agrees_with_scan() {
                $crate::testing::conformance::scan_with_agrees_with_scan(&$engine)
            }
            #[test]
            fn get_with_agrees_with_get() {
                $crate::testing::conformance::get_with_agrees_with_get(&$engine)
            }
            #[test]
            fn binary_keys_and_values() {
                $crate::testing::conformance::binary_keys_and_values(&$engine)
            }
            #[test]
            fn large_values() {
                $crate::testing::conformance::large_values(&$engine)
            }
            #[test]
            fn persistence_across_reopen() {
                $crate::testing::conformance::persistence_across_reopen(&$engine)
            }
            #[test]
            fn compaction_preserves_data() {
                $crate::testing::conformance::compaction_preserves_data(&$engine)
            }
            #[test]
            fn live_keys_counter_follows_writes() {
                $crate::testing::conformance::live_keys_counter_follows_writes(&$engine)
            }
            #[test]
            fn concurrent_writers_and_readers() {
                $crate::testing::conformance::concurrent_writers_and_readers(&$engine)
            }
        }
    };
}

/// Runs the model property test on an engine, in a module called `$name`:
/// `$cases` random sequences of sets, deletes, batches, reads, scans,
/// reopens and compactions must answer as `MemoryStorage` does.
#[macro_export]
macro_rules! model_suite {
    ($name:ident, $engine:expr) => {
        $crate::model_suite!($name, $engine, 40);
    };
    ($name:ident, $engine:expr, $cases:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn matches_the_model() {
                $crate::testing::model::check(&$engine, $cases)
            }
        }
    };
}

/// Runs the fault suite on an engine, in a module called `$name`: how to
/// open it in `$dir` with `$opener` (any `FileOpener`), e.g.
/// `fault_suite!(my_engine, |dir, opener| MyEngine::open_with(dir, opener));`
#[macro_export]
macro_rules! fault_suite {
    ($name:ident, |$dir:ident, $opener:ident| $open:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn open<O: $crate::testing::faults::FileOpener + 'static>(
                $dir: &::std::path::Path,
                $opener: O,
            ) -> $crate::testing::faults::Opened {
                Ok(Box::new($open?))
            }

            const ENGINE: $crate::testing::faults::FaultEngine =
                $crate::testing::faults::FaultEngine {
                    name: stringify!($name),
                    faulty: open::<$crate::testing::faults::Faulty>,
                    plain: open::<$crate::testing::faults::MonolithicOpener>,
                };

            #[test]
            fn random_faults_then_power_cut() {
                $crate::testing::faults::random_faults_then_power_cut(&ENGINE)
            }

            #[test]
            fn a_failed_sync_poisons() {
                $crate::testing::faults::a_failed_sync_poisons(&ENGINE)
            }

            #[test]
            fn a_full_disk_is_a_clear_error_and_writes_resume() {
                $crate::testing::faults::a_full_disk_is_a_clear_error_and_writes_resume(&ENGINE)
            }

            #[test]
            fn a_torn_write_fails_alone() {
                $crate::testing::faults::a_torn_write_fails_alone(&ENGINE)
            }
        }
    };
}
