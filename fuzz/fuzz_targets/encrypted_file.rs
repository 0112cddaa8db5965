//! Opening and reading a damaged encrypted file: never panics, and never
//! returns a byte that differs from what was written.
//!
//! The input is split in two: the plaintext of a file that is written
//! through `EncryptedFile` (so the fuzzer does not have to forge tags to
//! get past the header), and damage to apply to the stored bytes (flips,
//! cuts, copies of ranges). The damaged file is reopened and read in
//! pieces; every read that succeeds must match the plaintext.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pydb_file::{DataKey, EncryptedFile, File, MonolithicFile};

fuzz_target!(|data: &[u8]| {
    let Some(dir) = pydb_fuzz::scratch_dir() else {
        return;
    };
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    // The plaintext is repeated so that files span several 4 KiB blocks.
    let cut = (split as usize * rest.len() / 256).min(rest.len());
    let (seed, damage) = rest.split_at(cut);
    let plaintext: Vec<u8> = seed.iter().cycle().take(seed.len() * 37).copied().collect();
    let key = DataKey::from_bytes([9; 32]);
    let path = dir.join("encrypted");
    let Ok(file) = MonolithicFile::create(&path) else {
        return;
    };
    let Ok(file) = EncryptedFile::open(file, &key) else {
        return;
    };
    if file.append(&plaintext).is_err() {
        return;
    }
    drop(file);
    let Ok(mut stored) = std::fs::read(&path) else {
        return;
    };
    for op in damage.chunks(5) {
        if stored.is_empty() {
            break;
        }
        let at = op.get(1..5).map_or(0, |b| {
            u32::from_le_bytes(b.try_into().unwrap_or_default()) as usize % stored.len()
        });
        match op[0] % 4 {
            0 => stored[at] ^= op.get(1).copied().unwrap_or(1).max(1),
            1 => stored.truncate(at),
            2 => {
                // Copy a block-sized range over another place.
                let from = (at * 7) % stored.len();
                let len = 4136.min(stored.len() - from).min(stored.len() - at);
                let range = stored[from..from + len].to_vec();
                stored[at..at + len].copy_from_slice(&range);
            }
            _ => stored[at] = op[0],
        }
    }
    if std::fs::write(&path, &stored).is_err() {
        return;
    }
    let Ok(inner) = MonolithicFile::open(&path, false) else {
        return;
    };
    let Ok(file) = EncryptedFile::open(inner, &key) else {
        return;
    };
    let len = file.len().unwrap_or(0) as usize;
    assert!(len <= plaintext.len(), "the file grew");
    for start in (0..len).step_by(1500) {
        let end = (start + 1500).min(len);
        let mut buf = vec![0u8; end - start];
        if file.read_at(start as u64, &mut buf).is_ok() {
            assert_eq!(buf, plaintext[start..end], "wrong bytes at {start}");
        }
    }
});
