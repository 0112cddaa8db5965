//! Guards key expiry through `Db` on every persistent engine: deadlines survive a reopen, the expiry API follows Redis's rules, and after expiry plus compaction the expired bytes are gone from the files.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use pydb::{
    Db, EngineKind, ExpireCondition, ManualClock, Options, SetCondition, SetExpiry, SetOptions,
    SyncPolicy, Ttl,
};

const PERSISTENT: [EngineKind; 3] = [EngineKind::Log, EngineKind::BTree, EngineKind::Lsm];

fn options(engine: EngineKind, clock: &ManualClock) -> Options {
    Options {
        clock: clock.clone().into(),
        sync: SyncPolicy::Always,
        ..Options::with_engine(engine)
    }
}

#[test]
fn deadlines_survive_a_reopen_on_every_persistent_engine() {
    for engine in PERSISTENT {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(1_000_000);
        let db = Db::open(dir.path(), options(engine, &clock)).unwrap();
        db.set_with_expiry("short", "1", 1_000_500).unwrap();
        db.set_with_expiry("long", "2", 9_000_000).unwrap();
        db.set("forever", "3").unwrap();
        db.close().unwrap();

        let db = Db::open(dir.path(), options(engine, &clock)).unwrap();
        assert_eq!(db.ttl("short").unwrap(), Ttl::Remaining(500), "{engine}");
        assert_eq!(db.ttl("long").unwrap(), Ttl::Remaining(8_000_000));
        assert_eq!(db.ttl("forever").unwrap(), Ttl::Persistent);
        assert_eq!(db.key_count().unwrap(), 3);
        clock.advance(501);
        assert_eq!(db.get("short").unwrap(), None, "{engine}");
        assert_eq!(db.ttl("short").unwrap(), Ttl::Missing);
        assert_eq!(db.key_count().unwrap(), 2);
        db.close().unwrap();

        // Expired stays expired after a restart, even before any delete.
        let db = Db::open(dir.path(), options(engine, &clock)).unwrap();
        assert_eq!(db.get("short").unwrap(), None, "{engine}");
        assert_eq!(db.get("long").unwrap().unwrap(), "2");
        assert_eq!(db.key_count().unwrap(), 2);
        db.close().unwrap();
    }
}

#[test]
fn the_expiry_api_follows_redis_rules() {
    let clock = ManualClock::new(10_000);
    let db = Db::open("unused", options(EngineKind::Memory, &clock)).unwrap();
    // EXPIRE on a missing key does nothing.
    assert!(!db.expire_at("k", 20_000, &[]).unwrap());
    db.set("k", "v").unwrap();
    // NX / XX / GT / LT; no deadline counts as infinitely late.
    assert!(
        !db.expire_at("k", 20_000, &[ExpireCondition::IfSome])
            .unwrap()
    );
    assert!(
        !db.expire_at("k", 20_000, &[ExpireCondition::IfLater])
            .unwrap()
    );
    assert!(
        db.expire_at("k", 20_000, &[ExpireCondition::IfEarlier])
            .unwrap()
    );
    assert!(
        !db.expire_at("k", 30_000, &[ExpireCondition::IfNone])
            .unwrap()
    );
    assert!(
        db.expire_at("k", 30_000, &[ExpireCondition::IfLater])
            .unwrap()
    );
    assert!(
        !db.expire_at(
            "k",
            40_000,
            &[ExpireCondition::IfSome, ExpireCondition::IfEarlier]
        )
        .unwrap()
    );
    assert_eq!(db.ttl("k").unwrap(), Ttl::Remaining(20_000));
    // INCR-style writes keep the deadline; a plain set clears it.
    db.set_with(
        "n",
        "1",
        SetOptions {
            condition: None,
            expiry: SetExpiry::At(15_000),
        },
    )
    .unwrap();
    assert_eq!(db.incr_by("n", 5).unwrap(), 6);
    assert_eq!(db.ttl("n").unwrap(), Ttl::Remaining(5_000));
    let out = db
        .set_with(
            "n",
            "x",
            SetOptions {
                condition: Some(SetCondition::IfPresent),
                expiry: SetExpiry::Keep,
            },
        )
        .unwrap();
    assert!(out.written);
    assert_eq!(out.old.unwrap(), "6");
    assert_eq!(db.ttl("n").unwrap(), Ttl::Remaining(5_000));
    assert!(db.persist("n").unwrap());
    assert!(!db.persist("n").unwrap());
    assert_eq!(db.ttl("n").unwrap(), Ttl::Persistent);
    // A deadline at or before now deletes at once.
    assert!(db.expire_at("n", 10_000, &[]).unwrap());
    assert_eq!(db.get("n").unwrap(), None);
    // An expired key is absent for NX: it can be set again.
    clock.set(30_001);
    assert_eq!(db.get("k").unwrap(), None);
    assert!(db.set_if("k", "new", SetCondition::IfAbsent).unwrap());
    assert_eq!(db.ttl("k").unwrap(), Ttl::Persistent);
}

/// Total bytes of the files under `dir`.
/// The bytes of data in the files under `dir`: each file up to its last
/// nonzero byte. The log engine writes zeros ahead of its active
/// segment's end (preallocation, 1 MiB by default); they are space, not
/// data, and would hide what compaction dropped.
fn data_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            data_bytes(&entry.path())
        } else {
            let bytes = std::fs::read(entry.path()).unwrap();
            bytes
                .iter()
                .rposition(|&b| b != 0)
                .map_or(0, |i| i as u64 + 1)
        };
    }
    total
}

/// Whether any file under `dir` holds `needle`.
fn any_file_holds(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let path = entry.unwrap().path();
        if path.is_dir() {
            return any_file_holds(&path, needle);
        }
        let bytes = std::fs::read(&path).unwrap();
        bytes.windows(needle.len()).any(|w| w == needle)
    })
}

const MARKER: &[u8] = b"EXPIRED-PAYLOAD-";

/// How expired keys leave before compaction.
#[derive(Debug, Clone, Copy)]
enum Collector {
    /// Garbage collection alone drops the expired versions.
    GcOnly,
    /// The expirer deletes them first (tombstones), then GC.
    Expirer,
}

/// Writes 200 expiring 2 KiB values (each with the marker) and 5 that
/// stay, lets the 200 expire, and compacts. No background expirer runs,
/// so that what is collected, and when, is up to the test.
fn expire_and_compact(
    engine: EngineKind,
    collector: Collector,
) -> (tempfile::TempDir, Db, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let options = Options {
        expire_interval: None,
        ..options(engine, &clock)
    };
    let db = Db::open(dir.path(), options).unwrap();
    let mut value = MARKER.repeat(128);
    for i in 0..200u32 {
        value[..4].copy_from_slice(&i.to_le_bytes());
        db.set_with_expiry(format!("gone{i:03}"), &value, 1_001_000)
            .unwrap();
    }
    for i in 0..5 {
        db.set(format!("keep{i}"), "stays").unwrap();
    }
    db.flush().unwrap();
    let before = data_bytes(dir.path());
    clock.advance(1_001);
    assert_eq!(db.key_count().unwrap(), 5);
    if let Collector::Expirer = collector {
        let mut expired = 0;
        loop {
            let report = db.txn_manager().expire_cycle().unwrap();
            expired += report.expired;
            if report.wrapped {
                break;
            }
        }
        assert_eq!(expired, 200);
    }
    db.compact().unwrap();
    db.flush().unwrap();
    let after = data_bytes(dir.path());
    (dir, db, before, after)
}

#[test]
fn compaction_of_the_log_drops_expired_bytes() {
    for collector in [Collector::GcOnly, Collector::Expirer] {
        log_compaction_drops_expired_bytes(collector);
    }
}

fn log_compaction_drops_expired_bytes(collector: Collector) {
    let (dir, db, before, after) = expire_and_compact(EngineKind::Log, collector);
    println!("log, {collector:?}: files {before} -> {after} bytes");
    assert!(before > 200 * 2048, "{before}");
    assert!(after * 10 < before, "files {before} -> {after} bytes");
    assert!(!any_file_holds(dir.path(), MARKER), "expired bytes remain");
    assert_eq!(db.get("keep3").unwrap().unwrap(), "stays");
    // Nothing expired comes back after a reopen.
    let options = db.options().clone();
    db.close().unwrap();
    let db = Db::open(dir.path(), options).unwrap();
    assert_eq!(db.key_count().unwrap(), 5);
    assert!(db.get("gone007").unwrap().is_none());
}

#[test]
fn compaction_drops_expired_records_on_btree_and_lsm() {
    for (engine, collector) in [
        (EngineKind::BTree, Collector::GcOnly),
        (EngineKind::BTree, Collector::Expirer),
        (EngineKind::Lsm, Collector::GcOnly),
        (EngineKind::Lsm, Collector::Expirer),
    ] {
        let (dir, db, before, after) = expire_and_compact(engine, collector);
        println!(
            "{engine}, {collector:?}: files {before} -> {after} bytes, expired bytes in files: {}",
            any_file_holds(dir.path(), MARKER)
        );
        // The engine holds one version per kept key, and the metadata.
        let records = db
            .engine()
            .scan(pydb::storage::KeyRange::all())
            .unwrap()
            .count();
        assert_eq!(records, 5 + 2, "{engine} {collector:?}");
        if engine == EngineKind::Lsm {
            // LSM compaction rewrites every table: the bytes are gone.
            assert!(after * 10 < before, "files {before} -> {after} bytes");
            assert!(!any_file_holds(dir.path(), MARKER), "expired bytes remain");
        }
        // The B+tree frees the pages, but its compaction does not rewrite
        // the file, so freed pages (and the WAL) may still hold old bytes.
        assert_eq!(db.key_count().unwrap(), 5);
    }
}
