//! Guards `pydb inspect` and `pydb check`: every checksum is verified (log-engine files and B+tree pages and WAL), damage gives a non-zero exit and points at `pydb repair`, a torn tail (and what B+tree recovery repairs) is not damage, and unknown files are refused.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::path::Path;

use pydb::file::MonolithicFile;
use pydb::meta::{self, Metadata};
use pydb::wal::{LogWriter, SyncPolicy};
use pydb::{EngineKind, IndexKind};

/// A database directory built by hand: metadata plus one record log.
fn make_db(dir: &Path) -> std::path::PathBuf {
    meta::write(dir, &Metadata::new(EngineKind::Log, Some(IndexKind::BTree))).unwrap();
    let log = dir.join("000001.log");
    let writer = LogWriter::new(MonolithicFile::create(&log).unwrap(), SyncPolicy::Always).unwrap();
    for i in 0..10 {
        writer
            .append(format!("record number {i}").as_bytes())
            .unwrap();
    }
    log
}

fn run(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let output = assert_cmd::Command::new(common::pydb_bin())
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn check(dir: &Path) -> (i32, String, String) {
    run(&["check".as_ref(), dir.as_os_str()])
}

fn inspect(path: &Path) -> (i32, String, String) {
    run(&["inspect".as_ref(), path.as_os_str()])
}

fn flip(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_healthy_database_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    make_db(dir.path());
    let (code, out, _) = check(dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("000001.log"), "{out}");
    assert!(out.contains("record log: 10 records ok"), "{out}");
    assert!(out.contains("directory metadata: ok"), "{out}");
    assert!(out.contains("no damage found"), "{out}");
}

#[test]
fn a_flipped_byte_in_a_record_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let log = make_db(dir.path());
    // Inside the payload of the third record: 16-byte header, records of
    // 9 + 15 bytes.
    flip(&log, 16 + 2 * 24 + 12);
    let (code, out, _) = check(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DAMAGED at offset 64"), "{out}");
    assert!(out.contains("DAMAGE FOUND in 1 of 2 files"), "{out}");
    assert!(out.contains("pydb repair"), "{out}");

    let (code, out, _) = inspect(&log);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("bad bytes at offset 64: record checksum mismatch"),
        "{out}"
    );
    assert!(out.contains("summary: 9 records ok, 1 damaged"), "{out}");
}

#[test]
fn a_torn_tail_is_reported_but_is_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    let log = make_db(dir.path());
    let mut bytes = std::fs::read(&log).unwrap();
    let len = bytes.len();
    bytes.truncate(len - 5);
    std::fs::write(&log, bytes).unwrap();
    let (code, out, _) = check(dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("9 records ok, torn tail of 19 bytes"), "{out}");
}

/// The log engine writes zeros ahead of its end (preallocation); after a
/// crash they follow the last record. The tools call them what they are.
#[test]
fn zeros_after_the_end_are_preallocated_space_not_a_torn_write() {
    let dir = tempfile::tempdir().unwrap();
    let log = make_db(dir.path());
    let mut bytes = std::fs::read(&log).unwrap();
    let end = bytes.len();
    bytes.resize(end + 4096, 0);
    std::fs::write(&log, &bytes).unwrap();
    let (code, out, _) = check(dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("10 records ok, 4096 bytes of preallocated zeros after the end"),
        "{out}"
    );
    assert!(!out.contains("torn tail"), "{out}");
    let (code, out, _) = inspect(&log);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("preallocated zeros: 4096 bytes from offset {end}")),
        "{out}"
    );
    assert!(
        out.contains("10 records ok, 0 damaged, 4096 torn bytes (4096 of them preallocated zeros)"),
        "{out}"
    );

    // A record cut short before the zeros is still a torn write.
    bytes.truncate(end - 5);
    bytes.resize(end - 5 + 4096, 0);
    std::fs::write(&log, &bytes).unwrap();
    let (code, out, _) = check(dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "9 records ok, torn tail of 19 bytes (an interrupted write), then 4096 bytes of preallocated zeros"
        ),
        "{out}"
    );
    let (_, out, _) = inspect(&log);
    assert!(out.contains("torn tail: 19 bytes from offset"), "{out}");
    assert!(
        out.contains("then 4096 bytes of preallocated zeros"),
        "{out}"
    );
}

#[test]
fn damaged_metadata_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    make_db(dir.path());
    flip(&dir.path().join("PYDB"), meta::META_INDEX_OFFSET);
    let (code, out, _) = check(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("metadata checksum mismatch"), "{out}");
}

#[test]
fn a_damaged_file_header_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let log = make_db(dir.path());
    flip(&log, 2);
    let (code, out, _) = check(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not a pydb file"), "{out}");
}

#[test]
fn a_directory_without_metadata_is_not_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = check(dir.path());
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("is not a pydb database"), "{err}");
}

#[test]
fn inspect_refuses_a_file_that_is_not_pydb() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "just some text").unwrap();
    let (code, _, err) = inspect(&path);
    assert_eq!(code, 2);
    assert!(err.contains("not a pydb file"), "{err}");
}

/// A real log-engine database: data, a compaction (sealed segment and
/// hint), more data in the active segment.
fn make_log_engine_db(dir: &Path) {
    let db = pydb::Db::open(dir, pydb::Options::default()).unwrap();
    for i in 0..50 {
        db.set(format!("key{i}"), format!("value {i}")).unwrap();
    }
    for i in 0..25 {
        db.delete(format!("key{i}")).unwrap();
    }
    db.compact().unwrap();
    db.set("after", "compaction").unwrap();
    db.close().unwrap();
}

#[test]
fn a_log_engine_database_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    make_log_engine_db(dir.path());
    let (code, out, _) = check(dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(
        // 25 live keys (one version each after the garbage collection of
        // `Db::compact`) and the 2 metadata keys of the transaction layer.
        out.contains("000000000002.hint        hint file: 27 entries ok"),
        "{out}"
    );
    assert!(out.contains("no damage found"), "{out}");
}

#[test]
fn a_flipped_byte_in_a_segment_or_a_hint_is_damage() {
    for file in ["000000000002.log", "000000000002.hint"] {
        let dir = tempfile::tempdir().unwrap();
        make_log_engine_db(dir.path());
        let path = dir.path().join(file);
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        flip(&path, len / 2);
        let (code, out, _) = check(dir.path());
        assert_eq!(code, 1, "{file}: {out}");
        assert!(out.contains("DAMAGE FOUND in 1 of"), "{file}: {out}");
        let (code, out, _) = inspect(&path);
        assert_eq!(code, 1, "{file}: {out}");
    }
}

#[test]
fn a_record_that_is_not_a_log_entry_is_damage_in_a_log_engine_directory() {
    // make_db writes records whose payloads are plain text: valid records,
    // but not log entries, which the engine would refuse to open.
    let dir = tempfile::tempdir().unwrap();
    make_db(dir.path());
    let (code, out, _) = check(dir.path());
    // make_db's metadata names the log engine, so its log is a segment.
    assert_eq!(
        code, 0,
        "a healthy plain log is fine outside the engine: {out}"
    );
    std::fs::rename(
        dir.path().join("000001.log"),
        dir.path().join("000000000001.log"),
    )
    .unwrap();
    let (code, out, _) = inspect(&dir.path().join("000000000001.log"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("entry: BAD"), "{out}");
}

/// The page size of the B+tree databases below (the default).
const PAGE: usize = 4096;

/// A B+tree database through the facade, with enough keys for a tree of
/// several levels, closed cleanly.
fn make_btree_db(dir: &Path) -> Vec<(String, String)> {
    let db = pydb::Db::open(dir, pydb::Options::with_engine(EngineKind::BTree)).unwrap();
    let pairs: Vec<(String, String)> = (0..400)
        .map(|i| {
            (
                format!("key{i:05}"),
                format!("value {i} {}", "x".repeat(60)),
            )
        })
        .collect();
    for (k, v) in &pairs {
        db.set(k, v).unwrap();
    }
    db.close().unwrap();
    pairs
}

fn assert_all_readable(dir: &Path, pairs: &[(String, String)]) {
    let db = pydb::Db::open(dir, pydb::Options::with_engine(EngineKind::BTree)).unwrap();
    for (k, v) in pairs {
        assert_eq!(db.get(k).unwrap().as_deref(), Some(v.as_bytes()), "{k}");
    }
    db.close().unwrap();
}

#[test]
fn a_healthy_btree_database_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    make_btree_db(dir.path());
    let (code, out, _) = check(dir.path());
    assert_eq!(code, 0, "{out}");
    let pages = std::fs::metadata(dir.path().join("pages")).unwrap().len() as usize / PAGE;
    assert!(pages > 4, "a tree of several pages: {out}");
    assert!(
        out.contains(&format!(
            "pages                    B+tree page file: {pages} pages ok"
        )),
        "{out}"
    );
    assert!(
        out.contains("wal/0000000001.log       record log:"),
        "{out}"
    );
    assert!(out.contains("no damage found"), "{out}");

    let (code, out, _) = inspect(&dir.path().join("pages"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("page 2 at offset 8192:"), "{out}");
    assert!(out.contains(": internal, crc32"), "{out}");
    // The facade stores version keys of pydb-txn: the key-space byte 0x01,
    // the key, its terminator, then the inverted commit timestamp.
    assert!(out.contains("key \"\\x01key00000\\x00\\x00\\xff"), "{out}");
    assert!(
        out.contains(&format!(
            "summary: {pages} pages ok, 0 restored from the WAL, 0 damaged"
        )),
        "{out}"
    );
    let (code, out, _) = inspect(&dir.path().join("wal").join("0000000001.log"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(a segment of the B+tree WAL)"), "{out}");
    assert!(out.contains("redo: full page image of page 2"), "{out}");
    assert!(out.contains("redo: tree meta: root"), "{out}");
}

#[test]
fn a_flipped_byte_in_a_btree_data_page_is_damage_at_the_page_offset() {
    let dir = tempfile::tempdir().unwrap();
    make_btree_db(dir.path());
    let pages = dir.path().join("pages");
    flip(&pages, 3 * PAGE + PAGE / 2);
    let (code, out, _) = check(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("DAMAGED at offset 12288: page 3: page checksum mismatch"),
        "{out}"
    );
    assert!(out.contains("DAMAGE FOUND in 1 of"), "{out}");
    // Issue 16, W6: check advises only what repair can do, and repair
    // rebuilds B+tree databases (tests/repair.rs checks what it keeps).
    assert!(
        out.contains("run `pydb repair DIR` to rebuild the tree"),
        "{out}"
    );

    let (code, out, _) = run(&[
        "inspect".as_ref(),
        "--page".as_ref(),
        "3".as_ref(),
        pages.as_os_str(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("page 3 at offset 12288:"), "{out}");
    assert!(out.contains("BAD (computed"), "{out}");
    assert!(
        out.contains("summary: 0 pages ok, 0 restored from the WAL, 1 damaged"),
        "{out}"
    );
}

#[test]
fn a_page_holding_another_page_number_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    make_btree_db(dir.path());
    let pages = dir.path().join("pages");
    // Page 4 overwritten by a copy of page 3: its checksum verifies, its
    // number does not (a write that landed in the wrong place).
    let mut bytes = std::fs::read(&pages).unwrap();
    let page3 = bytes[3 * PAGE..4 * PAGE].to_vec();
    bytes[4 * PAGE..5 * PAGE].copy_from_slice(&page3);
    std::fs::write(&pages, bytes).unwrap();
    let (code, out, _) = check(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("DAMAGED at offset 16384: page 4: holds page number 3"),
        "{out}"
    );
}

#[test]
fn one_damaged_meta_copy_is_a_note_and_the_database_still_opens() {
    for copy in [0, 1] {
        let dir = tempfile::tempdir().unwrap();
        let pairs = make_btree_db(dir.path());
        flip(&dir.path().join("pages"), copy * PAGE + 44);
        let (code, out, _) = check(dir.path());
        assert_eq!(code, 0, "copy {copy}: {out}");
        assert!(
            out.contains(&format!(
                "note: meta copy {copy} at offset {} is invalid (meta page checksum mismatch)",
                copy * PAGE
            )),
            "copy {copy}: {out}"
        );
        let (code, out, _) = inspect(&dir.path().join("pages"));
        assert_eq!(code, 0, "copy {copy}: {out}");
        assert!(out.contains(&format!("meta copy {copy}: INVALID")), "{out}");
        assert_all_readable(dir.path(), &pairs);
    }
}

#[test]
fn two_damaged_meta_copies_are_damage() {
    let dir = tempfile::tempdir().unwrap();
    make_btree_db(dir.path());
    flip(&dir.path().join("pages"), 44);
    flip(&dir.path().join("pages"), PAGE + 44);
    let (code, out, _) = check(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "DAMAGED at offset 0: no valid meta page (copy 0: meta page checksum mismatch"
        ),
        "{out}"
    );
}

/// A B+tree database whose process was killed after `n` acknowledged
/// writes: the WAL holds them, the page file is as it was created (no
/// checkpoint ran).
fn make_crashed_btree_db(dir: &Path, n: usize) {
    use std::io::{BufRead, BufReader, Write};
    let mut child = std::process::Command::new(common::pydb_bin())
        .args(["shell", "--engine", "btree", "--dir"])
        .arg(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut replies = BufReader::new(child.stdout.take().unwrap());
    for i in 0..n {
        writeln!(stdin, "SET key{i} value{i}").unwrap();
        stdin.flush().unwrap();
        let mut reply = String::new();
        replies.read_line(&mut reply).unwrap();
        assert_eq!(reply.trim_end(), "OK");
    }
    // Killed with stdin still open: no clean close, no checkpoint.
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Cuts the last `bytes` bytes off `path`, as a crash in mid-append would.
fn cut_tail(path: &Path, bytes: u64) {
    let len = std::fs::metadata(path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(len - bytes).unwrap();
}

#[test]
fn a_torn_tail_of_the_last_btree_wal_segment_is_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    make_crashed_btree_db(dir.path(), 5);
    let segment = dir.path().join("wal").join("0000000001.log");
    cut_tail(&segment, 3);
    let (code, out, _) = check(dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("wal/0000000001.log       record log:"),
        "{out}"
    );
    assert!(out.contains("torn tail of"), "{out}");
    // Recovery agrees: the four whole writes are there, the torn one is not.
    let db = pydb::Db::open(dir.path(), pydb::Options::with_engine(EngineKind::BTree)).unwrap();
    assert_eq!(db.get("key3").unwrap().as_deref(), Some(&b"value3"[..]));
    assert_eq!(db.get("key4").unwrap(), None);
    db.close().unwrap();
}

#[test]
fn a_torn_tail_of_an_earlier_btree_wal_segment_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    make_btree_db(dir.path());
    // After the clean close, segment 1 holds the writes and segment 2 is
    // the empty active one.
    assert!(dir.path().join("wal").join("0000000002.log").exists());
    let segment = dir.path().join("wal").join("0000000001.log");
    cut_tail(&segment, 3);
    let (code, out, _) = check(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("in a WAL segment that is not the last"),
        "{out}"
    );
}

#[test]
fn a_torn_page_that_the_wal_holds_an_image_of_is_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    make_crashed_btree_db(dir.path(), 3);
    // Page 2, the root leaf, as a torn write would leave it; the WAL holds
    // its full image, logged by its first change after the checkpoint.
    flip(&dir.path().join("pages"), 2 * PAGE + 100);
    let (code, out, _) = check(dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("pages [2] fail their checks, but the WAL holds full images of them"),
        "{out}"
    );
    let (code, out, _) = inspect(&dir.path().join("pages"));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("summary: 2 pages ok, 1 restored from the WAL, 0 damaged"),
        "{out}"
    );
    let db = pydb::Db::open(dir.path(), pydb::Options::with_engine(EngineKind::BTree)).unwrap();
    for i in 0..3 {
        assert_eq!(
            db.get(format!("key{i}")).unwrap().as_deref(),
            Some(format!("value{i}").as_bytes())
        );
    }
    db.close().unwrap();
}

#[test]
fn page_applies_to_page_files_only() {
    let dir = tempfile::tempdir().unwrap();
    make_btree_db(dir.path());
    let (code, _, err) = run(&[
        "inspect".as_ref(),
        "--page".as_ref(),
        "1".as_ref(),
        dir.path().join("PYDB").as_os_str(),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--page applies to a B+tree page file"),
        "{err}"
    );
    let (code, _, err) = run(&[
        "inspect".as_ref(),
        "--page".as_ref(),
        "100000".as_ref(),
        dir.path().join("pages").as_os_str(),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--page 100000: the file has pages 0 to"),
        "{err}"
    );
}

/// A log-engine database of at least three segments, closed cleanly.
fn make_three_segment_db(dir: &Path) -> Vec<u64> {
    let options = pydb::storage::LogOptions {
        max_segment_size: 400,
        background_compaction: false,
        ..pydb::storage::LogOptions::default()
    };
    meta::write(dir, &Metadata::new(EngineKind::Log, Some(IndexKind::BTree))).unwrap();
    let engine = pydb::storage::AppendOnlyLogStorage::open(dir, options).unwrap();
    let mut i = 0;
    while engine.segment_ids().len() < 3 {
        use pydb::storage::StorageEngine;
        engine
            .set(
                format!("key{i}").as_bytes(),
                format!("value {i}").as_bytes(),
            )
            .unwrap();
        i += 1;
    }
    drop(engine);
    pydb::file::list_ids(dir, "log").unwrap()
}

#[test]
fn a_missing_middle_segment_is_damage_with_or_without_its_hint() {
    // Issue 16, B2: check said "ok" while opening failed.
    for remove_hint in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let ids = make_three_segment_db(dir.path());
        let (code, out, _) = check(dir.path());
        assert_eq!(code, 0, "{out}");
        std::fs::remove_file(pydb::file::segment_path(dir.path(), ids[1], "log")).unwrap();
        let hint = pydb::storage::log::hint::hint_path(dir.path(), ids[1]);
        if remove_hint {
            std::fs::remove_file(&hint).unwrap();
        }
        assert!(pydb::Db::open(dir.path(), pydb::Options::default()).is_err());
        let (code, out, _) = check(dir.path());
        assert_eq!(code, 1, "hint removed: {remove_hint}: {out}");
        assert!(out.contains("a segment is missing"), "{out}");
        assert!(out.contains("pydb repair"), "{out}");
    }
}

/// `pydb ARGS`, killed if it has not finished in 20 seconds (a read of a
/// FIFO blocks forever).
fn run_bounded(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let output = assert_cmd::Command::new(common::pydb_bin())
        .args(args)
        .timeout(std::time::Duration::from_secs(20))
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn inspect_and_check_refuse_special_files_without_blocking() {
    // Issue 16, W5: /dev/zero and /proc files printed "empty file"; a FIFO
    // blocked forever.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    for (path, says) in [
        (Path::new("/dev/zero"), "a character device"),
        (Path::new("/proc/self/status"), "virtual filesystem"),
        (fifo.as_path(), "a FIFO"),
        (dir.path(), "a directory"),
    ] {
        let (code, out, err) = run_bounded(&["inspect".as_ref(), path.as_os_str()]);
        assert_eq!(code, 2, "{}: {out}{err}", path.display());
        assert!(err.contains(says), "{}: {err}", path.display());
        assert!(err.contains("regular file"), "{}: {err}", path.display());
    }
    for path in [Path::new("/dev/zero"), fifo.as_path()] {
        let (code, out, err) = run_bounded(&["check".as_ref(), path.as_os_str()]);
        assert_eq!(code, 2, "{}: {out}{err}", path.display());
        assert!(err.contains("not a directory"), "{}: {err}", path.display());
    }
}

#[test]
fn check_skips_a_fifo_inside_a_database_directory_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    make_db(dir.path());
    mkfifo(&dir.path().join("stranger"));
    let (code, out, err) = run_bounded(&["check".as_ref(), dir.path().as_os_str()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("stranger"), "{out}");
    assert!(out.contains("not a regular file"), "{out}");

    std::fs::remove_file(dir.path().join("PYDB")).unwrap();
    mkfifo(&dir.path().join("PYDB"));
    let (code, out, err) = run_bounded(&["check".as_ref(), dir.path().as_os_str()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("a FIFO"), "{err}");
}

#[test]
fn an_lsm_database_is_checked_by_its_own_verifier_and_damage_fails_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = pydb::Db::open(dir.path(), pydb::Options::with_engine(EngineKind::Lsm)).unwrap();
    for i in 0..2000 {
        db.set(format!("key{i:05}"), format!("value{i}")).unwrap();
    }
    db.compact().unwrap();
    db.close().unwrap();
    let (code, out, err) = check(dir.path());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("verdict: ok"), "{out}");

    let table = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "sst"));
    let table = table.expect("compaction leaves at least one table");
    flip(&table, 10);
    let (code, out, _) = check(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DAMAGE"), "{out}");
    assert!(out.contains("table block and WAL batch"), "{out}");
}

/// An LSM database with at least one table; returns a table and the live
/// manifest.
fn make_lsm_db(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let db = pydb::Db::open(dir, pydb::Options::with_engine(EngineKind::Lsm)).unwrap();
    for i in 0..2000 {
        db.set(format!("key{i:05}"), format!("value{i}")).unwrap();
    }
    db.compact().unwrap();
    db.close().unwrap();
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let table = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "sst"))
        .expect("compaction leaves at least one table")
        .clone();
    let current = std::fs::read(dir.join("CURRENT")).unwrap();
    let number = pydb_storage::lsm::manifest::parse_current(&current).unwrap();
    let manifest = dir.join(pydb_storage::lsm::manifest::manifest_name(number));
    assert!(manifest.exists(), "CURRENT names {manifest:?}");
    (table, manifest)
}

#[test]
fn inspect_describes_a_healthy_lsm_table_and_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let (table, manifest) = make_lsm_db(dir.path());
    let (code, out, err) = inspect(&table);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("LSM table, "), "{out}");
    assert!(out.contains("footer: version"), "{out}");
    assert!(out.contains("filter: "), "{out}");
    assert!(out.contains("block 0: @0 "), "{out}");
    assert!(out.contains("restart points"), "{out}");
    // 2,000 keys, plus the transaction layer's metadata keys (`Db` keeps
    // its data as versions through pydb-txn).
    let entries: u64 = out
        .split("properties: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no entry count in {out}"));
    assert!((2000..2010).contains(&entries), "{out}");
    assert!(out.contains("verdict: ok"), "{out}");

    let (code, out, err) = inspect(&manifest);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("LSM manifest, "), "{out}");
    assert!(out.contains("edit at offset"), "{out}");
    assert!(out.contains("+L"), "{out}");
    assert!(out.contains("verdict: ok"), "{out}");
}

#[test]
fn a_flipped_byte_in_an_lsm_table_or_manifest_fails_inspect_naming_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (table, manifest) = make_lsm_db(dir.path());
    // The length of the first data block, which starts at offset 0.
    let (_, healthy, _) = inspect(&table);
    let block_len: u64 = healthy
        .split("block 0: @0 ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no block 0 in {healthy}"));
    flip(&table, 10);
    let (code, out, _) = inspect(&table);
    assert_eq!(code, 1, "{out}");
    // The block's checksum, in its trailer, is what fails.
    let offset: u64 = out
        .split("verdict: DAMAGED at offset ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no damage offset in {out}"));
    // The handle length leaves out the 5-byte trailer (type + crc32).
    assert!(
        offset > 10 && offset <= block_len + 5,
        "{offset} {block_len} {out}"
    );
    assert!(out.contains("block checksum mismatch"), "{out}");

    // Inside the first record of the manifest, whose file header is
    // 16 bytes.
    flip(&manifest, 34);
    let (code, out, _) = inspect(&manifest);
    assert_eq!(code, 1, "{out}");
    let offset: u64 = out
        .split("verdict: DAMAGED at offset ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no damage offset in {out}"));
    assert!((16..=34).contains(&offset), "{offset} {out}");
    assert!(!out.contains("verdict: ok"), "{out}");
}

#[test]
fn check_verifies_the_sql_tables_of_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = pydb::Db::open(dir.path(), pydb::Options::with_engine(EngineKind::BTree)).unwrap();
    db.sql(
        "CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT); \
         CREATE INDEX t_b ON t (b); \
         INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three')",
    )
    .unwrap();
    db.close().unwrap();
    let (code, out, _) = check(dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("SQL data: 1 tables, 1 indexes, 3 rows, 3 index entries ok"),
        "{out}"
    );

    // Without SQL tables there is no SQL line.
    let plain = tempfile::tempdir().unwrap();
    make_btree_db(plain.path());
    let (code, out, _) = check(plain.path());
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("SQL data"), "{out}");
}
