//! Leveled against tiered compaction, on the same write stream.
//!
//! Runs one stream of random overwrites through two LSM engines, one per
//! compaction style, and prints as they evolve:
//!
//! - **write amplification**: bytes written to disk (WAL, flushes,
//!   compactions) per byte the user wrote;
//! - **space amplification**: bytes in tables per byte of live data (the
//!   latest value of every key);
//! - **read cost per level**: how many tables a point read of a key may
//!   consult in each level (all overlapping tables of level 0 and of tiered
//!   levels; at most one per leveled level).
//!
//! ```text
//! cargo run --release -p pydb-storage --example lsm_styles [writes] [keys]
//! ```

use std::collections::HashMap;

use pydb_storage::{CompactionStyle, LsmOptions, LsmStorage, StorageEngine};
use pydb_wal::SyncPolicy;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let writes: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(300_000);
    let keys: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(30_000);
    let value_len = 100;
    println!("{writes} random overwrites of {keys} keys, {value_len}-byte values\n");
    for style in [CompactionStyle::Leveled, CompactionStyle::Tiered] {
        let dir = tempfile::tempdir()?;
        let options = LsmOptions {
            sync_policy: SyncPolicy::Never,
            memtable_size: 256 << 10,
            level1_size: 1 << 20,
            target_file_size: 256 << 10,
            style,
            ..LsmOptions::default()
        };
        let db = LsmStorage::open(dir.path(), options)?;
        let mut live: HashMap<u64, usize> = HashMap::new();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        println!("== {style:?} ==");
        println!(
            "{:>9}  {:>9}  {:>9}  read cost per level (tables a point read may consult)",
            "writes", "write amp", "space amp"
        );
        for i in 1..=writes {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let k = rng % keys;
            let key = format!("key{k:010}");
            let value = vec![(i % 251) as u8; value_len];
            db.set(key.as_bytes(), &value)?;
            live.insert(k, key.len() + value.len());
            if i % (writes / 6).max(1) == 0 || i == writes {
                if i == writes {
                    db.flush_memtable()?;
                    db.wait_for_compactions()?;
                }
                report(&db, i, &live, style);
            }
        }
        println!();
    }
    Ok(())
}

fn report(db: &LsmStorage, writes: u64, live: &HashMap<u64, usize>, style: CompactionStyle) {
    let stats = db.stats();
    let stat = |name: &str| stats.get(name).unwrap_or(0);
    let live_bytes: usize = live.values().sum();
    let space = stat("table_bytes") as f64 / live_bytes.max(1) as f64;
    let files = db.level_files();
    let per_level: Vec<String> = files
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(level, n)| {
            let cost = if level == 0 || style == CompactionStyle::Tiered {
                *n
            } else {
                1
            };
            format!("L{level}:{cost}")
        })
        .collect();
    println!(
        "{writes:>9}  {:>9.2}  {:>9.2}  {}  (+ memtables)",
        stat("write_amplification_x100") as f64 / 100.0,
        space,
        per_level.join(" ")
    );
}
