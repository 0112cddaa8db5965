//! Opening and reading a compressed file: from arbitrary bytes it never
//! panics; from a file written through `CompressedFile` and then damaged by
//! single-byte flips (which CRC-32 always detects), it never returns a byte
//! that differs from what was written.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pydb_file::{CompressedFile, File, MonolithicFile};

/// Opens `path` and reads it all in pieces; returns what each successful
/// read gave, with its offset.
fn read_back(path: &std::path::Path) -> Vec<(usize, Vec<u8>)> {
    let Ok(inner) = MonolithicFile::open(path, false) else {
        return Vec::new();
    };
    let Ok(file) = CompressedFile::open_with_chunk_size(inner, 256) else {
        return Vec::new();
    };
    let len = file.len().unwrap_or(0) as usize;
    let mut out = Vec::new();
    for start in (0..len).step_by(300) {
        let end = (start + 300).min(len);
        let mut buf = vec![0u8; end - start];
        if file.read_at(start as u64, &mut buf).is_ok() {
            out.push((start, buf));
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some(dir) = pydb_fuzz::scratch_dir() else {
        return;
    };
    let path = dir.join("compressed");
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        // Arbitrary bytes as a compressed file.
        if std::fs::write(&path, rest).is_ok() {
            let _ = read_back(&path);
        }
        return;
    }
    // Appends of the input's pieces, then flips named by the last bytes.
    let (flips, body) = rest.split_at(rest.len().min(8));
    let Ok(file) = MonolithicFile::create(&path) else {
        return;
    };
    let Ok(file) = CompressedFile::open_with_chunk_size(file, 256) else {
        return;
    };
    let mut written = Vec::new();
    for piece in body.chunks(1 + mode as usize % 97) {
        if file.append(piece).is_err() {
            return;
        }
        written.extend_from_slice(piece);
    }
    drop(file);
    let Ok(mut stored) = std::fs::read(&path) else {
        return;
    };
    if let Some(pair) = flips.get(..2).filter(|_| !stored.is_empty()) {
        let at = u16::from_le_bytes([pair[0], pair[1]]) as usize % stored.len();
        stored[at] ^= flips.get(2).copied().unwrap_or(1).max(1);
    }
    if std::fs::write(&path, &stored).is_err() {
        return;
    }
    for (start, bytes) in read_back(&path) {
        assert_eq!(
            bytes,
            written[start..start + bytes.len()],
            "wrong bytes at {start}"
        );
    }
});
