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
//! cargo run --release -p pydb-storage --example lsm_styles [writes] [keys] [plot.svg]
//! ```
//!
//! With a third argument it also draws write and space amplification of
//! both styles against the writes made, sampled 30 times, as an SVG file
//! (the plot on `docs/benchmarks/lsm.md`). The SVG is written by hand, a
//! few lines of text, so the example needs no plotting library.

use std::collections::HashMap;

use pydb_storage::{CompactionStyle, LsmOptions, LsmStorage, StorageEngine};
use pydb_wal::SyncPolicy;

/// One style's samples: (writes made, write amplification, space
/// amplification).
type Series = (CompactionStyle, Vec<(u64, f64, f64)>);

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
    let svg_path = args.next();
    let value_len = 100;
    let mut series: Vec<Series> = Vec::new();
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
        let mut points = Vec::new();
        for i in 1..=writes {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let k = rng % keys;
            let key = format!("key{k:010}");
            let value = vec![(i % 251) as u8; value_len];
            db.set(key.as_bytes(), &value)?;
            live.insert(k, key.len() + value.len());
            if i == writes {
                db.flush_memtable()?;
                db.wait_for_compactions()?;
            }
            if i % (writes / 30).max(1) == 0 || i == writes {
                points.push((i, write_amp(&db), space_amp(&db, &live)));
            }
            if i % (writes / 6).max(1) == 0 || i == writes {
                report(&db, i, &live, style);
            }
        }
        series.push((style, points));
        println!();
    }
    if let Some(path) = svg_path {
        std::fs::write(&path, svg(&series, writes))?;
        println!("wrote {path}");
    }
    Ok(())
}

fn write_amp(db: &LsmStorage) -> f64 {
    db.stats().get("write_amplification_x100").unwrap_or(0) as f64 / 100.0
}

fn space_amp(db: &LsmStorage, live: &HashMap<u64, usize>) -> f64 {
    let live_bytes: usize = live.values().sum();
    db.stats().get("table_bytes").unwrap_or(0) as f64 / live_bytes.max(1) as f64
}

/// A line chart of both amplifications of both styles: x is writes made,
/// y the amplification; solid lines for write, dashed for space.
fn svg(series: &[Series], writes: u64) -> String {
    let (w, h, left, bottom, top, right) = (720.0, 420.0, 60.0, 50.0, 40.0, 190.0);
    let y_max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(_, a, b)| a.max(b)))
        .fold(1.0f64, f64::max)
        .ceil();
    let x =
        |writes_made: u64| left + (w - left - right) * writes_made as f64 / writes.max(1) as f64;
    let y = |v: f64| h - bottom - (h - bottom - top) * v / y_max;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{left}\" y=\"24\" font-size=\"15\">Leveled against tiered: \
         amplification as random overwrites go on</text>\n"
    );
    for i in 0..=y_max as u32 {
        let yy = y(f64::from(i));
        out += &format!(
            "<line x1=\"{left}\" y1=\"{yy}\" x2=\"{}\" y2=\"{yy}\" stroke=\"#ddd\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{i}</text>\n",
            w - right,
            left - 6.0,
            yy + 4.0
        );
    }
    out += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">writes made (of {writes})</text>\n\
         <text x=\"{left}\" y=\"{}\">0</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{writes}</text>\n",
        (left + w - right) / 2.0,
        h - 12.0,
        h - bottom + 16.0,
        w - right,
        h - bottom + 16.0
    );
    let colors = ["#1f77b4", "#d62728"];
    let mut legend_y = top + 10.0;
    for ((style, points), color) in series.iter().zip(colors) {
        for (what, dash, pick) in [
            ("write amp", "", 0usize),
            ("space amp", " stroke-dasharray=\"6 4\"", 1usize),
        ] {
            let path: Vec<String> = points
                .iter()
                .map(|&(n, a, b)| format!("{:.1},{:.1}", x(n), y(if pick == 0 { a } else { b })))
                .collect();
            out += &format!(
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{dash} points=\"{}\"/>\n\
                 <line x1=\"{}\" y1=\"{legend_y}\" x2=\"{}\" y2=\"{legend_y}\" stroke=\"{color}\" stroke-width=\"2\"{dash}/>\
                 <text x=\"{}\" y=\"{}\">{style:?}, {what}</text>\n",
                path.join(" "),
                w - right + 12.0,
                w - right + 42.0,
                w - right + 48.0,
                legend_y + 4.0
            );
            legend_y += 20.0;
        }
    }
    out + "</svg>\n"
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
