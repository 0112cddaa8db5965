//! The demo of the original pydb, run by `cargo run --release`: set a key
//! twice, read it back, then close the database, reopen it and show that the
//! value survived, with the engine's counters.
//!
//! It runs in a fresh temporary directory, removed at the end, with the
//! default options (log engine, B-tree index, sync always).

use std::io::Write;

use pydb::{Db, Options};

use crate::{Error, Result};

/// Runs the demo, writing its lines to `out`.
pub fn run(out: &mut dyn Write) -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir().display(), e))?;
    let path = dir.path().join("demo");
    let w = |e| Error::io("<stdout>", e);

    let db = Db::open(&path, Options::default())?;
    db.set("hello", "world")?;
    writeln!(out, "SET: hello = world").map_err(w)?;
    db.set("hello", "all")?;
    writeln!(out, "SET: hello = all").map_err(w)?;
    let value = db.get("hello")?.unwrap_or_default();
    writeln!(out, "GET: hello = {}", String::from_utf8_lossy(&value)).map_err(w)?;
    db.close()?;

    let options = Options::default();
    let db = Db::open(&path, options.clone())?;
    writeln!(
        out,
        "closed and reopened the database ({} engine, {} index)",
        options.engine, options.index
    )
    .map_err(w)?;
    let value = db.get("hello")?.unwrap_or_default();
    writeln!(
        out,
        "GET after reopen: hello = {}",
        String::from_utf8_lossy(&value)
    )
    .map_err(w)?;
    let stats = db.stats();
    writeln!(out, "stats ({} engine):", stats.engine).map_err(w)?;
    for (name, value) in &stats.counters {
        writeln!(out, "  {name}: {value}").map_err(w)?;
    }
    db.close()?;
    Ok(())
}
