//! Opening and checking an LSM table from arbitrary bytes (footer, index,
//! filter, properties, every data block): never panics, only errors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pydb_file::{FileOpener, MonolithicOpener};
use pydb_storage::lsm::describe_table;

fuzz_target!(|data: &[u8]| {
    let Some(dir) = pydb_fuzz::scratch_dir() else {
        return;
    };
    let path = dir.join("000001.sst");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(file) = MonolithicOpener.open(&path, false) else {
        return;
    };
    if let Ok(report) = describe_table(file) {
        let _ = report.to_string();
    }
});
