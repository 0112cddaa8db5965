//! Guards the encryption and compression flags of the `pydb` binary: `shell`, `check`, `inspect`, `repair` and `rekey` on encrypted (and lz4-compressed) databases, with the right key, a wrong one and none.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use pydb_file::encrypted::ENCRYPTED_DATA_AT;

/// Runs `pydb ARGS` with `input` on stdin.
fn pydb(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(common::pydb_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn key_file(dir: &Path, name: &str, byte: u8) -> String {
    let path = dir.join(name);
    std::fs::write(&path, [byte; 40]).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn shell_check_inspect_and_rekey_on_an_encrypted_compressed_database() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let db = db.to_str().unwrap();
    let key = key_file(tmp.path(), "key", 1);
    let other = key_file(tmp.path(), "other", 2);
    let shell = |key: &str, input: &str| {
        pydb(
            &[
                "shell",
                "--dir",
                db,
                "--encryption-key-file",
                key,
                "--compression",
                "lz4",
            ],
            input,
        )
    };

    let mut input = String::new();
    for i in 0..200 {
        input.push_str(&format!(
            "SET visible-key-{i} value-{i}-{}\n",
            "x".repeat(60)
        ));
    }
    input.push_str("STATS\n");
    let out = shell(&key, &input);
    assert!(out.status.success(), "{}", text(&out));
    let stats = text(&out);
    assert!(stats.contains("encrypted"), "{stats}");
    assert!(stats.contains("compression_ratio_permille"), "{stats}");

    // The right key reads the data back; a wrong key and no key are exit 2
    // with a clear message.
    let out = shell(&key, "GET visible-key-7\n");
    assert!(text(&out).contains("value-7-"), "{}", text(&out));
    let out = shell(&other, "GET visible-key-7\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("wrong encryption key"),
        "{}",
        text(&out)
    );
    let out = pydb(&["shell", "--dir", db, "--compression", "lz4"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("is encrypted"), "{}", text(&out));
    let out = pydb(&["shell", "--dir", db, "--encryption-key-file", &key], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("--compression lz4"), "{}", text(&out));

    // check: every block and record verified with the key.
    let out = pydb(&["check", db, "--encryption-key-file", &key], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("encrypted"), "{}", text(&out));
    assert!(text(&out).contains("ok:"), "{}", text(&out));
    let out = pydb(&["check", db], "");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("is encrypted"), "{}", text(&out));

    // inspect: structure without the key, records with it.
    let segment = std::fs::read_dir(db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .unwrap();
    let segment = segment.to_str().unwrap();
    let out = pydb(&["inspect", segment], "");
    let shown = text(&out);
    assert!(shown.contains("encrypted file"), "{shown}");
    assert!(shown.contains("no key given"), "{shown}");
    assert!(!shown.contains("visible-key"), "{shown}");
    let out = pydb(&["inspect", segment, "--encryption-key-file", &key], "");
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("lz4-compressed file"), "{shown}");
    assert!(shown.contains("visible-key-"), "{shown}");
    let out = pydb(&["inspect", "PYDB"], "");
    assert_ne!(out.status.code(), Some(0));
    let out = pydb(&["inspect", &format!("{db}/PYDB")], "");
    assert!(
        text(&out).contains("0x03 (encrypted, lz4)"),
        "{}",
        text(&out)
    );

    // A flipped byte in a segment is damage, found by check.
    // The byte is in the first whole block, which is not the block before
    // the last (damage there, or in the newest last-block slot, reads as a
    // torn tail, as in the WAL).
    let mut bytes = std::fs::read(segment).unwrap();
    let at = ENCRYPTED_DATA_AT as usize + 100;
    assert!(bytes.len() > at + 2 * 4136, "{} bytes", bytes.len());
    bytes[at] ^= 0x01;
    std::fs::write(segment, &bytes).unwrap();
    let out = pydb(&["check", db, "--encryption-key-file", &key], "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    bytes[at] ^= 0x01;
    std::fs::write(segment, &bytes).unwrap();

    // repair without the key, or with damaged metadata (which holds the
    // wrapped key), refuses and changes nothing.
    let before: Vec<_> = std::fs::read_dir(db)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let out = pydb(&["repair", db], "");
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("key"), "{}", text(&out));
    let meta_path = format!("{db}/PYDB");
    let good_meta = std::fs::read(&meta_path).unwrap();
    std::fs::write(&meta_path, b"garbage").unwrap();
    let out = pydb(&["repair", db, "--encryption-key-file", &key], "");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("nothing was changed"), "{}", text(&out));
    assert_eq!(std::fs::read(&meta_path).unwrap(), b"garbage");
    std::fs::write(&meta_path, &good_meta).unwrap();
    let after: Vec<_> = std::fs::read_dir(db)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after);

    // With lz4 over the encryption, damage inside a segment stops the
    // compressed layer's walk when the segment is opened: repair refuses
    // it, with the offset, and changes nothing.
    let mut bytes = std::fs::read(segment).unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(segment, &bytes).unwrap();
    let out = pydb(&["repair", db, "--encryption-key-file", &key], "");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("offset"), "{}", text(&out));
    assert_eq!(std::fs::read(segment).unwrap(), bytes);
    bytes[at] ^= 0x01;
    std::fs::write(segment, &bytes).unwrap();

    // rekey: the new key file opens the database, the old one no longer.
    let new = key_file(tmp.path(), "new", 3);
    let out = pydb(
        &[
            "rekey",
            db,
            "--encryption-key-file",
            &other,
            "--new-key-file",
            &new,
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = pydb(
        &[
            "rekey",
            db,
            "--encryption-key-file",
            &key,
            "--new-key-file",
            &new,
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("rewrapped data key"), "{}", text(&out));
    let out = shell(&new, "GET visible-key-199\n");
    assert!(text(&out).contains("value-199-"), "{}", text(&out));
    let out = shell(&key, "GET visible-key-199\n");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn lz4_on_the_btree_is_refused_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let out = pydb(
        &[
            "shell",
            "--dir",
            db.to_str().unwrap(),
            "--engine",
            "btree",
            "--compression",
            "lz4",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("rewrites its pages in place"),
        "{}",
        text(&out)
    );
    assert!(!db.exists());
}

/// `pydb repair --encryption-key-file` on an encrypted log database: a
/// damaged block in the middle of a segment is dropped with what follows
/// it in that segment, every batch before it is kept, the original is kept
/// aside, and the database checks clean and opens again.
#[test]
fn repair_goes_through_the_decryption() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let db = db.to_str().unwrap();
    let key = key_file(tmp.path(), "key", 1);
    let shell = |input: &str| {
        pydb(
            &["shell", "--dir", db, "--encryption-key-file", &key],
            input,
        )
    };
    let mut input = String::new();
    for i in 0..400 {
        input.push_str(&format!(
            "SET visible-key-{i:03} value-{i}-{}\n",
            "y".repeat(60)
        ));
    }
    assert_eq!(shell(&input).status.code(), Some(0));
    let segment = std::fs::read_dir(db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    // Whole block 1 of 8 or so: the records of block 0 stay.
    let at = ENCRYPTED_DATA_AT as usize + 4136 + 100;
    assert!(bytes.len() > at + 3 * 4136, "{} bytes", bytes.len());
    bytes[at] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();
    let out = pydb(&["check", db, "--encryption-key-file", &key], "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    let out = pydb(&["repair", db, "--encryption-key-file", &key], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("rewritten"), "{}", text(&out));
    // The original is kept aside (check would report its damage there).
    let aside = std::fs::read_dir(db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("repair-")
        })
        .expect("an aside directory");
    assert_eq!(
        std::fs::read(aside.join(segment.file_name().unwrap())).unwrap(),
        bytes
    );
    std::fs::remove_dir_all(&aside).unwrap();
    let out = pydb(&["check", db, "--encryption-key-file", &key], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = shell("GET visible-key-000\nGET visible-key-399\nSET after yes\nGET after\n");
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("value-0-"),
        "the first records are kept: {shown}"
    );
    assert!(shown.contains("yes"), "{shown}");
    // No plaintext reached the disk.
    assert_no_plaintext(Path::new(db));
}

/// `pydb repair --encryption-key-file` on an encrypted B+tree database: a
/// page whose block fails authentication is a damaged page; every other
/// leaf's pairs are kept, written into a new tree encrypted with the same
/// key, the original page file is kept aside, and the database checks
/// clean and opens again. An encrypted LSM database is refused unchanged.
#[test]
fn repair_of_an_encrypted_btree_goes_through_the_decryption() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let db = db.to_str().unwrap();
    let key = key_file(tmp.path(), "key", 1);
    let shell = |input: &str| {
        pydb(
            &[
                "shell",
                "--dir",
                db,
                "--engine",
                "btree",
                "--encryption-key-file",
                &key,
            ],
            input,
        )
    };
    let mut input = String::new();
    for i in 0..600 {
        input.push_str(&format!(
            "SET visible-key-{i:03} value-{i}-{}\n",
            "y".repeat(60)
        ));
    }
    assert_eq!(shell(&input).status.code(), Some(0));
    let pages = Path::new(db).join("pages");
    let mut bytes = std::fs::read(&pages).unwrap();
    // Page 4 (a whole block: 4096-byte pages over 4096-byte blocks).
    let at = ENCRYPTED_DATA_AT as usize + 4 * 4136 + 100;
    assert!(bytes.len() > at + 4136, "{} bytes", bytes.len());
    bytes[at] ^= 0x01;
    std::fs::write(&pages, &bytes).unwrap();
    let out = pydb(&["check", db, "--encryption-key-file", &key], "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // Without the key: refused, nothing changed.
    let out = pydb(&["repair", db], "");
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(std::fs::read(&pages).unwrap(), bytes);

    let out = pydb(&["repair", db, "--encryption-key-file", &key], "");
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("page 4 at offset"), "{shown}");
    assert!(shown.contains("failed authentication"), "{shown}");
    let aside = std::fs::read_dir(db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("repair-")
        })
        .expect("an aside directory");
    assert_eq!(std::fs::read(aside.join("pages")).unwrap(), bytes);
    std::fs::remove_dir_all(&aside).unwrap();
    let out = pydb(&["check", db, "--encryption-key-file", &key], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Most pairs are kept (at most the damaged page's own pairs are lost:
    // none if it is an internal page, whose leaves the scan finds), each
    // with its whole value.
    let mut gets = String::new();
    for i in 0..600 {
        gets.push_str(&format!("GET visible-key-{i:03}\n"));
    }
    gets.push_str("SET after yes\nGET after\n");
    let out = shell(&gets);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let kept = (0..600)
        .filter(|i| shown.contains(&format!("value-{i}-{}", "y".repeat(60))))
        .count();
    assert!((500..=600).contains(&kept), "{kept} of 600 kept");
    assert!(shown.contains("yes"), "{shown}");
    // No plaintext reached the disk.
    assert_no_plaintext(Path::new(db));
}

#[test]
fn repair_of_an_encrypted_lsm_database_goes_through_the_decryption() {
    let tmp = tempfile::tempdir().unwrap();
    let lsm = tmp.path().join("lsm");
    let lsm = lsm.to_str().unwrap();
    let key = key_file(tmp.path(), "key", 1);
    let shell = |input: &str| {
        pydb(
            &[
                "shell",
                "--dir",
                lsm,
                "--engine",
                "lsm",
                "--encryption-key-file",
                &key,
            ],
            input,
        )
    };
    let mut input = String::new();
    for i in 0..600 {
        input.push_str(&format!(
            "SET visible-key-{i:03} value-{i}-{}\n",
            "y".repeat(60)
        ));
    }
    assert_eq!(shell(&input).status.code(), Some(0));
    // A clean database: nothing to repair.
    let out = pydb(&["repair", lsm, "--encryption-key-file", &key], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("nothing to repair"), "{}", text(&out));

    // Damage in the middle of the WAL, which holds every write (one
    // memtable's worth): the block fails authentication.
    let wal = std::fs::read_dir(lsm)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("a WAL");
    let mut bytes = std::fs::read(&wal).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&wal, &bytes).unwrap();
    let out = pydb(&["check", lsm, "--encryption-key-file", &key], "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // Without the key: refused, nothing changed.
    let out = pydb(&["repair", lsm], "");
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(std::fs::read(&wal).unwrap(), bytes);

    let out = pydb(&["repair", lsm, "--encryption-key-file", &key], "");
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("the rest of the WAL"), "{shown}");
    let out = pydb(&["check", lsm, "--encryption-key-file", &key], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The writes before the damaged block are kept, each whole, and none
    // after it.
    let mut gets = String::new();
    for i in 0..600 {
        gets.push_str(&format!("GET visible-key-{i:03}\n"));
    }
    let shown = text(&shell(&gets));
    let kept: Vec<bool> = (0..600)
        .map(|i| shown.contains(&format!("value-{i}-{}", "y".repeat(60))))
        .collect();
    let first_lost = kept.iter().position(|k| !k).expect("something lost");
    assert!(first_lost > 100, "{first_lost} kept");
    assert!(kept[first_lost..].iter().all(|k| !k), "a prefix is kept");
    // No plaintext reached the disk.
    assert_no_plaintext(Path::new(lsm));
}

/// Fails if a file of `dir` holds the test's plaintext keys.
fn assert_no_plaintext(dir: &Path) {
    for file in std::fs::read_dir(dir).unwrap() {
        let path = file.unwrap().path();
        if path.is_file() {
            let raw = std::fs::read(&path).unwrap();
            assert!(
                !raw.windows(12).any(|w| w == b"visible-key-"),
                "{}",
                path.display()
            );
        }
    }
}
